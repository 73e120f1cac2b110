"""Importing torch_utils (or spine) turns on MKL's reproducible mode before any matrix product, unless set."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mkl_cbwr_after_import(package: str, user_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    if user_value is not None:
        env["MKL_CBWR"] = user_value
    code = f"import os, {package}; print(os.environ.get('MKL_CBWR', '<unset>'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize("package", ["torch_utils", "spine"])
def test_import_sets_strict_reproducibility(package):
    assert mkl_cbwr_after_import(package, None) == "AUTO,STRICT"


def test_a_users_own_setting_is_kept():
    assert mkl_cbwr_after_import("torch_utils", "COMPATIBLE") == "COMPATIBLE"
