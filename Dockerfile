# One image for every service: `docker build -t flashsale .`, then run
# `python -m services.<name>` (the Kubernetes Deployments pass it as args; SERVICE sets
# the default). Non-root (uid 10001, as the pods' securityContext), no writes to the
# root filesystem at run time (the pods mount it read-only).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install --require-hashes -r requirements.txt

COPY services/ services/
COPY tools/__init__.py tools/bootstrap.py tools/
RUN python -m compileall -q services tools \
    && groupadd --gid 10001 flashsale \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin flashsale

USER 10001:10001
ARG SERVICE=seckill
ENV SERVICE=${SERVICE}
EXPOSE 8081 8082 9081 9082
CMD ["sh", "-c", "exec python -m services.${SERVICE}"]
