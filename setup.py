"""Build hook for the one C extension, ``service._speedups`` (everything else is in pyproject.toml).

The extension is optional: without a C compiler the install still succeeds and the service runs the
pure-Python twins of its functions (same outputs, slower; see service/_speedups.c).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "service._speedups",
            ["service/_speedups.c", "service/_rank_json.c", "service/_scores.c"],
            depends=[
                "service/_buffers.h",
                "service/_fnv1a.h",
                "service/_rank_json.h",
                "service/_scores.h",
            ],
            optional=True,
            # no fused multiply-add: every float operation rounds as numpy's and the parser's twins do
            extra_compile_args=["-O2", "-ffp-contract=off"],
        )
    ]
)
