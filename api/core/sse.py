"""What every Server-Sent Events response sends: no caching, and no buffering by a proxy
(nginx honours X-Accel-Buffering), so each event reaches the client as it is written."""

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
