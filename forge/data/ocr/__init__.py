"""OCR benchmark data: olmOCR-bench pages (PDF page + olmocr's unit tests) and OmniDocBench pages
(page image + markdown ground truth), plus rendering PDF pages to images with pypdfium2.

A library for the VLM handlers and the `olmocr_checks` reward; nothing here trains. Each module
imports its heavy dependency (olmocr, pypdfium2) itself, so importing this package costs nothing.
"""
