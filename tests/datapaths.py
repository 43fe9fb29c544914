"""Where the tests find public data: one place, so a clone with nothing beside it skips cleanly.

$GLASSFORMER_DATA wins when it is set (CI points it at ../shared/data, and runs the data-free part
once more with it pointing nowhere); otherwise a development checkout's ../shared/data. The layout is
the data cache's: tinyshakespeare/input.txt, wikitext-2/{train,valid,test}.txt, gpt2-tokenizer/...
"""
import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ["GLASSFORMER_DATA"]) if os.environ.get("GLASSFORMER_DATA") \
    else ROOT.parent / "shared" / "data"


def data_path(relative):
    """DATA / relative, or skip the test with a reason a user can act on."""
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"needs {relative} in {DATA}: fetch it with python -m glassformer.data fetch, "
                    "or set GLASSFORMER_DATA")
    return path


def serve(folder):
    """A loopback HTTP server over `folder`, laid out as GLASSFORMER_DATA_MIRROR expects (NAME/FILE):
    its URL. The thread is a daemon; the fetch command reaches nothing beyond 127.0.0.1."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"
