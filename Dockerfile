FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
COPY config ./config
RUN pip install --no-cache-dir .
ENV PIPELINE_CONFIG_DIR=/app/config \
    PIPELINE_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["pipeline"]
CMD ["--help"]
