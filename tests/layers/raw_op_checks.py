"""
Calling the raw dispatcher ops with bad input in a child process: the C++ checks must raise a
RuntimeError naming the problem, and if a build ever turns such an error into a crash (as seen
once on a GPU machine: a segmentation fault instead of the RuntimeError), the test that asked for
it fails instead of the crash killing the whole test run.
"""

import json
import subprocess
import sys
import textwrap

_CHILD = textwrap.dedent("""
    import json, sys
    import torch
    import tensormask_proj.layers  # loads the ops and their Python registrations
    ops = torch.ops.tensormask_proj
    results = []
    for kernels in json.loads(sys.argv[2]):
        ops._set_kernels(kernels)
        for expr in json.loads(sys.argv[1]):
            try:
                eval(expr)
                results.append(["no error", ""])
            except Exception as e:
                results.append([type(e).__name__, str(e).splitlines()[0] if str(e) else ""])
    print(json.dumps(results))
    """)


def raw_op_errors(test, device, cases, kernels=("default",)):
    """
    Run every ``(expression, message regex)`` of ``cases`` with each kernel choice of
    ``kernels`` (see ``tensormask_proj.layers.use_kernels``) in one child process, where the
    expression may use ``ops`` (``torch.ops.tensormask_proj``), ``torch`` and ``dev`` (the device
    string), and check that each raised a RuntimeError matching its regex.
    """
    exprs = [f"(lambda dev: {expr})({device!r})" for expr, _ in cases]
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(exprs), json.dumps(list(kernels))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    test.assertEqual(
        proc.returncode,
        0,
        f"the child process calling the raw ops died (exit status {proc.returncode}):\n"
        f"{proc.stderr[-3000:]}",
    )
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = [(name, expr, pattern) for name in kernels for expr, pattern in cases]
    for (name, expr, pattern), (kind, message) in zip(expected, results):
        with test.subTest(kernels=name, expr=expr):
            test.assertEqual(kind, "RuntimeError", f"{expr}: {kind}: {message}")
            test.assertRegex(message, pattern)
