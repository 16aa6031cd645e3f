"""
The compiled extension shares the process's C++ runtime. An extension that carries its own copy
of libstdc++ (linked statically, as a relocated GCC on a GPU machine did) turns every C++ error
of its kernels into a segmentation fault: the error is thrown with one runtime and unwound with
the other. setup.py links the runtime torch has loaded; this checks the built library for it.
"""

import importlib
import shutil
import subprocess
import sys
import unittest

try:
    _EXTENSION = importlib.import_module("tensormask_proj._C").__file__
except ImportError:
    _EXTENSION = None


@unittest.skipUnless(sys.platform.startswith("linux"), "ELF shared libraries only")
@unittest.skipIf(_EXTENSION is None, "tensormask_proj._C is not built")
@unittest.skipIf(shutil.which("readelf") is None, "needs binutils' readelf")
class ExtensionRuntimeTest(unittest.TestCase):
    def readelf(self, *flags):
        return subprocess.run(
            ["readelf", "--wide", *flags, _EXTENSION], capture_output=True, text=True, check=True
        ).stdout

    def test_needs_the_shared_cxx_runtime(self):
        needed = [line for line in self.readelf("--dynamic").splitlines() if "(NEEDED)" in line]
        self.assertTrue(
            any("libstdc++.so" in line for line in needed),
            f"{_EXTENSION} does not load libstdc++.so (linked statically?); NEEDED: {needed}",
        )

    def test_defines_no_cxx_exception_machinery(self):
        # Defined (not UND) copies of these mean a second runtime inside the extension.
        runtime = ("__cxa_throw", "__gxx_personality_v0", "__cxa_begin_catch")
        defined = [
            fields[-1]
            for fields in (line.split() for line in self.readelf("--dyn-syms").splitlines())
            if len(fields) >= 8 and fields[6] != "UND" and fields[-1].split("@")[0] in runtime
        ]
        self.assertEqual(defined, [], f"{_EXTENSION} carries its own C++ runtime: {defined}")


if __name__ == "__main__":
    unittest.main()
