"""Drawing on what was trained: `make serve`, a page and a JSON API under uvicorn.

    app.py        the FastAPI app and its routes; running it
    static/       the page (index.html: no CDN, works offline)

May import: core, nn, data, config, run
"""
