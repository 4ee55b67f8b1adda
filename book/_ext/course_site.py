"""The book's own Sphinx extension: fixes of the theme stack's scripts, and the version in the footer.

Loaded through ``sphinx.local_extensions`` in ``_config.yml``. It does three things the stock Jupyter Book 1 stack gets
wrong or leaves out, each checked page by page by the browser test (``tests/browser``):

1. **Each script once.** ``sphinx-thebe`` adds its inline configuration (``const THEBE_JS_URL = …``) every time the
   environment is read, and Jupyter Book reads it twice, so every page declared the constant twice and threw
   ``Identifier 'THEBE_JS_URL' has already been declared``. Duplicate script entries are dropped per page.
2. **Widgets under MathJax 3.** The Jupyter widget manager (``@jupyter-widgets/html-manager`` 1.x, what myst-nb
   loads) typesets widget labels with MathJax 2's ``MathJax.Hub.Queue``, which MathJax 3 does not have (``Cannot
   read properties of undefined (reading 'Queue')``); and it asks require.js for its own fonts relative to the page
   (404s), because require.js is not told where the manager lives. Pages with saved widgets get a small script,
   between require.js and the manager, that maps the manager's module path to its CDN folder and gives MathJax 3 a
   ``Hub.Queue`` that forwards to ``MathJax.typesetPromise``.
3. **One version everywhere.** The footer names the package version (``icl_course.__version__``, read from the
   installed package metadata, i.e. ``pyproject.toml``) and the repository (``repository.url`` in ``_config.yml``),
   and the edition (``course_edition``: ``full`` or ``student``).
"""

from __future__ import annotations

import json
import re

_MANAGER = re.compile(r"^(https://[^ ]+/@jupyter-widgets/html-manager@[^/]+)/dist/embed-amd\.js$")

_WIDGET_COMPAT = """(function () {{
  // require.js resolves the widget manager's module (and its webpack chunks and fonts) under this folder.
  if (window.require && window.require.config) {{
    window.require.config({{paths: {{"@jupyter-widgets/html-manager": {manager}}}}});
  }}
  // html-manager 1.x typesets widget labels with MathJax 2's Hub.Queue; MathJax 3 has typesetPromise instead, and
  // its calls must not overlap: each waits for the one before (and for MathJax's start-up).
  var pending = null;
  function queue(job) {{
    var element = Array.isArray(job) ? job[2] : undefined;
    var mj = window.MathJax;
    if (!mj || !mj.startup || !mj.typesetPromise) {{ return; }}
    pending = (pending || mj.startup.promise)
      .then(function () {{ return mj.typesetPromise(element ? [element] : undefined); }})
      .catch(function (error) {{ console.error("MathJax could not typeset a widget label:", error); }});
  }}
  function install() {{
    if (window.MathJax && !window.MathJax.Hub) {{ window.MathJax.Hub = {{Queue: queue}}; }}
  }}
  install();
  document.addEventListener("DOMContentLoaded", install);
}})();"""


def _name(script) -> str:
    return str(getattr(script, "filename", script) or "")


def _key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    return _name(script), getattr(script, "priority", 500), tuple(sorted((k, str(v)) for k, v in attributes.items()))


def _fix_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop duplicate script entries; put the widget shim between require.js and the widget manager."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        if _key(script) not in seen:
            seen.add(_key(script))
            kept.append(script)
    for i, script in enumerate(kept):
        if m := _MANAGER.match(_name(script)):
            from sphinx.builders.html._assets import _JavaScript

            body = _WIDGET_COMPAT.format(manager=json.dumps(m[1]))
            kept.insert(i, _JavaScript("", body=body))
            break
    scripts[:] = kept


def _footer(app, config) -> None:
    from icl_course import __version__

    options = config.html_theme_options
    url = options.get("repository_url") or ""
    edition = "student edition · " if config.course_edition == "student" else ""
    source = f' · <a href="{url}">source</a>' if url else ""
    options["extra_footer"] = (f'<p class="course-version">{edition}icl-course <span class="version">'
                               f"{__version__}</span>{source}</p>")


def setup(app):
    app.add_config_value("course_edition", "full", "html")
    app.connect("config-inited", _footer)
    app.connect("html-page-context", _fix_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
