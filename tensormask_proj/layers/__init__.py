from .swap_align2nat import SwapAlign2Nat, swap_align2nat, swap_align2nat_reference

__all__ = ["SwapAlign2Nat", "swap_align2nat", "swap_align2nat_reference"]
