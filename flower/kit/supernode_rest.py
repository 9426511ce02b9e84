# A Python SuperNode over the REST Fleet API with this Flower commit on Debian 12 (our addition to
# the kit, not Flower's): Flower's REST client joins its base URL and paths that start with "/",
# giving "//api/v0/…" URLs that Debian's Starlette answers with 404; strip the slash, then start
# flower-supernode as usual. Usage: python3 supernode_rest.py --insecure --rest --superlink http://HOST:PORT …
import sys

import flwr.client.rest_client.connection as rest

for name in dir(rest):
    if name.startswith("PATH_"):
        setattr(rest, name, getattr(rest, name).lstrip("/"))

from flwr.supernode.cli import flower_supernode  # noqa: E402

sys.argv[0] = "flower-supernode"
sys.exit(flower_supernode())
