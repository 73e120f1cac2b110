# Sourced by the bench/gpu_*.sh scripts: the Python to run ($PYTHON, default python3) as $py, and the wheels in
# $WHEELS (packages the lent GPU machine lacks, e.g. pydicom and opacus) installed to /tmp/site on $PYTHONPATH.
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
if [ -n "${WHEELS:-}" ]; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
