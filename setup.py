"""Build hook for the optional C kernel (see src/slimface/runtime/). Metadata is in pyproject.toml.

The extension is optional: when no compiler is present the package still installs and the
runtime falls back to its NumPy implementation (it logs which one it picked).
"""
from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Never fail the install because the C kernel did not compile."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "use the fallback"
            print(f"slimface: C kernel not built ({exc}); using the NumPy fallback")

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"slimface: {ext.name} not built ({exc}); using the NumPy fallback")


def _extensions() -> list:
    """C sources under src/slimface/runtime/ become extensions when present."""
    from pathlib import Path

    from setuptools import Extension

    src = Path("src/slimface/runtime/_kernel.c")
    if not src.exists():
        return []
    return [Extension("slimface.runtime._kernel", sources=[str(src)],
                      extra_compile_args=["-O3", "-fopenmp"], extra_link_args=["-fopenmp"])]


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
