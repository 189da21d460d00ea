"""``prnn serve``: the HTTP service (``prnn.serving``) on uvicorn."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import threading

from prnn.cli.common import check_at_least, check_device
from prnn.cli.paths import input_file, input_path
from prnn.errors import ConfigError

log = logging.getLogger("prnn")


def command_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535; got {args.port}")
    check_at_least(args.max_sessions, "--max-sessions")
    check_at_least(args.max_session_length, "--max-session-length")
    check_at_least(args.max_body_bytes, "--max-body-bytes", 1024)
    if not args.session_ttl > 0:
        raise ConfigError(f"--session-ttl must be > 0 seconds; got {args.session_ttl}")
    check_device(args.device)
    if args.model is not None:
        input_file(args.model, "", "model file")
    for flag, value in (("--items", args.items), ("--images", args.images)):
        if value is not None:
            input_path(value, flag, "file")

    import torch
    import uvicorn

    from prnn.serving import ServeOptions, create_app
    from prnn.serving.example import example_catalogue, example_model_path
    from prnn.threads import resolve_threads

    items, images = args.items, args.images
    model_path = args.model
    if model_path is None:
        model_path = example_model_path(progress=not args.quiet)
        default_items, default_images = example_catalogue()
        items, images = items or default_items, images or default_images
    app = create_app(
        model_path,
        ServeOptions(
            max_sessions=args.max_sessions,
            session_ttl_seconds=args.session_ttl,
            max_session_length=args.max_session_length,
            max_body_bytes=args.max_body_bytes,
            admin_token=args.admin_token,
            items_path=items,
            images_path=images,
            device=args.device,
        ),
    )

    # the click engine's thread scores with these: one for a catalogue of thousands of items,
    # a second core once scoring one session is 1e8 multiply-adds (a million items)
    choice = resolve_threads(None, "serve", work_per_step=app.state.engine.served.scoring_work())
    if choice.n is not None:
        torch.set_num_threads(choice.n)
    log.info("scoring with %s", choice.describe())

    def reload_on_hangup(signum, frame) -> None:  # SIGHUP: reload the model file, off the loop
        threading.Thread(target=app.state.reload, name="prnn-reload", daemon=True).start()

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, reload_on_hangup)
    # the libraries and the model loaded by now live as long as the process: out of the
    # collector's full passes with them, which otherwise walk their ~300k objects and stop
    # every thread for ~120 ms a few times a minute under load (docs/serving.md)
    gc.freeze()
    log.info("serving %s on http://%s:%d (API: /docs, demo: /)", model_path, args.host, args.port)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning" if args.quiet else "info",
        timeout_keep_alive=30,
    )
    return 0
