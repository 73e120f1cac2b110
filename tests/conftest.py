"""Makes tests/ importable from every test folder, for the shared helpers in tests/bad_inputs.py (pytest's default
import mode puts a conftest's folder on sys.path)."""
