"""The web UI's helpers (``app.py`` holds the tabs and their handlers): ``decoding`` (a control
per :class:`~captioning.decoding.Decoding` option and the overrides the controls pass), ``tags``
(how tags are shown: everyday words first, then ImageNet's labels) and ``trust`` (how far to
trust a caption: its confidence in words and the unfamiliar-photo warning). Importing the
package, ``tags`` or ``trust`` loads neither Gradio nor torch; ``decoding`` loads both.
"""
