"""The Celery application and worker start-up."""
