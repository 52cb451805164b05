"""The web pages: the hub's index, a page per model (playground, API snippets, versions, examples, history,
README), shared predictions, and the sign-in form, over the same objects as the Replicate API.

Server-rendered HTML (Jinja, autoescaped) with one hand-written script and one stylesheet shipped in the package:
nothing is built at run time and nothing is fetched from elsewhere. `router` holds the pages and the page's own
small JSON API (`/-/api/`); everything else the page needs it reads from the Replicate API.
"""
