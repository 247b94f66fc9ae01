"""Drawing on what was trained: `make serve`, a page and a JSON API under uvicorn.

    app.py      the FastAPI app: its routes, the request schemas, `kit serve` itself
    served.py   the model behind a lock, and what turns an image or pixels into an answer
    http.py     one-line JSON errors, the request-body limit, binding, uvicorn (in a thread too)
    static/     the page (index.html: no CDN, works offline)

May import: core, nn, data, config, run
"""
