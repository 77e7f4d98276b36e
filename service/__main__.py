"""``python -m service``: serve the API with uvicorn, one process.

Settings come from API_* environment variables (see the README's Configuration section), e.g.
API_MODEL_DIR=models API_HOST=127.0.0.1 API_PORT=8000 python -m service
"""

from __future__ import annotations

import argparse

import uvicorn

from service.app import create_app
from service.logs import configure_json_logging
from service.settings import Settings


def main() -> None:
    argparse.ArgumentParser(prog="python -m service", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    settings = Settings()
    configure_json_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, workers=1,
                access_log=False, log_config=None, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
