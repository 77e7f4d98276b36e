"""``python -m service``: serve the API with uvicorn, one process."""

from __future__ import annotations

import uvicorn

from service.app import create_app
from service.logs import configure_json_logging
from service.settings import Settings


def main() -> None:
    settings = Settings()
    configure_json_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, workers=1,
                access_log=False, log_config=None, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
