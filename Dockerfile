# lambda-rollouts: the controller image (operator mode by default).
# Build: docker build -t lambda-rollouts:0.1.0 .
# AWS credentials come from the environment at run time (IRSA, EKS Pod Identity, instance role);
# none are baked in.

# ---- builder: build the wheel and install it with its dependencies into a self-contained venv ----
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY crds ./crds
RUN /opt/venv/bin/pip install --upgrade pip wheel \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install /wheels/*.whl

# ---- final: the interpreter and the venv, nothing else -------------------------------------------
FROM python:3.11-slim
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
