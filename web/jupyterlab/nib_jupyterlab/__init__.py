"""nib-jupyterlab: nib's inline completion provider for JupyterLab, as a prebuilt labextension.

The extension is all front end (the model runs in the browser); this package only carries the
built labextension into share/jupyter/labextensions/nib-jupyterlab.
"""

__version__ = "0.1.0"


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "nib-jupyterlab"}]
