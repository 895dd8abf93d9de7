# lambda-rollouts: the controller image (operator mode by default).
# Build: docker build -t lambda-rollouts:0.1.0 .
# AWS credentials come from the environment at run time (IRSA, EKS Pod Identity, instance role);
# none are baked in.
#
# What gets installed is exactly what tests/e2e/test_install.py installs and runs: the project's
# wheel without extras plus requirements/runtime.lock (hash-pinned), by packaging/install.sh.
# The base image is pinned to the Python patch release the lock and the tests are made for. For
# byte-for-byte rebuilds also pin its digest, e.g. `FROM python:3.11.7-slim-bookworm@sha256:<digest>`
# (`docker buildx imagetools inspect python:3.11.7-slim-bookworm` prints it), in both stages.

# ---- builder: build the wheel and install it with its locked dependencies into a venv -------------
FROM python:3.11.7-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY crds ./crds
COPY packaging/install.sh ./packaging/install.sh
COPY requirements/runtime.lock ./requirements/runtime.lock
RUN python -m pip wheel --no-deps --wheel-dir /wheels .
RUN sh packaging/install.sh /opt/venv /wheels requirements/runtime.lock

# ---- final: the interpreter and the venv, nothing else -------------------------------------------
FROM python:3.11.7-slim-bookworm
LABEL org.opencontainers.image.title="lambda-rollouts" \
      org.opencontainers.image.description="Progressive delivery of AWS Lambda aliases" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=builder /opt/venv /opt/venv
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["lambda-rollouts"]
CMD ["operator"]
