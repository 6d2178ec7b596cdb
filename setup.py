"""The models travel inside the wheel: ``models/`` (kept at the top of the repository) is
copied into the package as ``livekit_avatar_plugin/_models`` when it is built, so a plugin
installed from PyPI or a built wheel finds its ONNX models and default avatar."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithModels(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads models/ in the checkout
            return
        target = Path(self.build_lib) / "livekit_avatar_plugin" / "_models"
        shutil.copytree(ROOT / "models", target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


setup(cmdclass={"build_py": BuildWithModels})
