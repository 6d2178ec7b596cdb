"""Take this process's avatar participants out of their rooms if the process dies.

A killed agent process (OOM, ``kill -9``, a crashed host runtime) cannot disconnect its
avatar participant, and LiveKit keeps a participant whose connection vanished for about
20 s in case it resumes: a frozen face in the room, on behalf of an agent that is gone.
So the first avatar a process starts also starts a small watcher process holding the read
end of a pipe. The kernel closes the pipe when this process dies, however it dies; the
watcher then asks the server to remove every avatar still registered, and exits.

The server credentials travel through the pipe, never on a command line or in the
environment, so they do not show in process listings.
"""

from __future__ import annotations

import datetime
import json
import logging
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import IO

logger = logging.getLogger("livekit_avatar_plugin.reaper")

_lock = threading.Lock()
_proc: subprocess.Popen[bytes] | None = None


def _send(message: dict) -> None:
    global _proc
    with _lock:
        if _proc is None or _proc.poll() is not None:
            # Its own session: a signal to this process's group must not take it down too.
            _proc = subprocess.Popen(
                [sys.executable, "-m", "livekit_avatar_plugin._reaper"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        assert _proc.stdin is not None
        try:
            _proc.stdin.write((json.dumps(message) + "\n").encode())
            _proc.stdin.flush()
        except OSError:
            logger.warning("the avatar reaper is not running; a crash may leave the avatar behind")


def watch(http_url: str, api_key: str, api_secret: str, room: str, identity: str) -> None:
    """Remove ``identity`` from ``room`` if this process dies before :func:`forget`."""
    _send(
        {"op": "watch", "url": http_url, "key": api_key, "secret": api_secret,
         "room": room, "identity": identity}
    )


def forget(room: str, identity: str) -> None:
    """The avatar left normally: nothing to clean up for it."""
    with _lock:
        running = _proc is not None and _proc.poll() is None
    if running:
        _send({"op": "forget", "room": room, "identity": identity})


# -- the watcher process ---------------------------------------------------------------------


def _admin_token(api_key: str, api_secret: str, room: str) -> str:
    from livekit.api.access_token import AccessToken, VideoGrants

    # Admin of this one room only, for one minute.
    return (
        AccessToken(api_key, api_secret)
        .with_grants(
            VideoGrants(
                room_admin=True, room=room,
                can_publish=False, can_subscribe=False, can_publish_data=False,
            )
        )
        .with_ttl(datetime.timedelta(seconds=60))
        .to_jwt()
    )


def _remove(entry: dict) -> None:
    request = urllib.request.Request(
        f"{entry['url']}/twirp/livekit.RoomService/RemoveParticipant",
        data=json.dumps({"room": entry["room"], "identity": entry["identity"]}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {_admin_token(entry['key'], entry['secret'], entry['room'])}",
        },
        method="POST",
    )
    for _ in range(3):
        try:
            with urllib.request.urlopen(request, timeout=3):
                return
        except urllib.error.HTTPError:
            return  # already gone (404) or refused: nothing more to do
        except OSError:
            time.sleep(0.3)


def _serve(stream: IO[bytes]) -> None:
    # Imported now, not in the hurry after EOF (it takes ~0.5 s).
    import livekit.api.access_token  # noqa: F401

    watched: dict[tuple[str, str], dict] = {}
    for line in stream:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        key = (msg.get("room", ""), msg.get("identity", ""))
        if msg.get("op") == "watch":
            watched[key] = msg
        elif msg.get("op") == "forget":
            watched.pop(key, None)
    # EOF: the process that started us is gone (or exiting without closing its avatars).
    threads = [threading.Thread(target=_remove, args=(e,)) for e in watched.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)


if __name__ == "__main__":
    _serve(sys.stdin.buffer)
