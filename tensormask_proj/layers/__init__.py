from .swap_align2nat import KERNEL_CHOICES, SwapAlign2Nat, swap_align2nat, use_kernels
from .swap_align2nat_at import swap_align2nat_at
from .swap_align2nat_reference import swap_align2nat_at_reference, swap_align2nat_reference

__all__ = [
    "SwapAlign2Nat",
    "swap_align2nat",
    "swap_align2nat_at",
    "swap_align2nat_reference",
    "swap_align2nat_at_reference",
    "use_kernels",
    "KERNEL_CHOICES",
]
