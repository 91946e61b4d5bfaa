# Sourced by the GPU scripts (benchmarks/gpu_run.sh, benchmarks/gpu_study_meta_train.sh) on a lent
# GPU machine without network, from the repository root: the other packages meta-training imports,
# carried as the git-ignored wheels of .whl/, go into /tmp/site (NO_WHEELS=1: they are installed
# already, for a check on a CPU); ganno runs from src/. Prints JAX's devices and the GPU.
rm -rf /tmp/site
if [ -z "${NO_WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1
python3 -c 'import jax; print(jax.__version__, jax.devices())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
