"""The live dashboard in the browser (``daqhub run --web``, ``daqhub view``).

The web server, its page and the data source it reads sit apart from the runtime: the
server runs its own asyncio loop in its own thread and reads only a lossy subscription of
the unified stream and the runtime's health snapshot, so a page that is slow, or a
hundred of them, can drop its own samples but never slows a poll. ``settings`` imports
nothing beyond the standard library, so the lab file's ``[daqhub.web]`` table is checked
even where the optional ``daqhub[web]`` dependencies are not installed.
"""
