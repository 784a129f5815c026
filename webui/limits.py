"""Gradio components that take uploads only; the body limit and the visitor cookie are lmdemo.serve.visitors'."""

from __future__ import annotations

import gradio as gr
from gradio_client import utils as client_utils

from lmdemo.serve.visitors import MAX_BODY_BYTES, VISITOR_COOKIE, BodyLimit, VisitorCookie, visitor_id  # noqa: F401

DELETE_CACHE = (1800, 3600)  # every 30 min, gradio's copies of uploads and results older than an hour go
URL_REFUSED = "Files are uploaded, not fetched from a URL: upload the file itself."


def local_files_only(component):
    """The component's file inputs must be uploads: a FileData naming a URL would make the server download it
    (no size limit applies to that), so it is refused. Bound on the instance: a subclass of a gradio component
    would make gradio write a .pyi stub beside this module."""
    move, async_move = component.move_resource_to_block_cache, component.async_move_resource_to_block_cache

    def refuse_urls(url_or_file_path):
        if url_or_file_path is not None and client_utils.is_http_url_like(str(url_or_file_path)):
            raise gr.Error(URL_REFUSED, print_exception=False)

    def checked(url_or_file_path):
        refuse_urls(url_or_file_path)
        return move(url_or_file_path)

    async def async_checked(url_or_file_path):
        refuse_urls(url_or_file_path)
        return await async_move(url_or_file_path)

    component.move_resource_to_block_cache = checked
    component.async_move_resource_to_block_cache = async_checked
    return component


def File(*args, **kwargs) -> gr.File:
    """gr.File that takes uploads only."""
    return local_files_only(gr.File(*args, **kwargs))


def Chatbot(*args, **kwargs) -> gr.Chatbot:
    """gr.Chatbot whose messages can carry uploaded files only."""
    return local_files_only(gr.Chatbot(*args, **kwargs))
