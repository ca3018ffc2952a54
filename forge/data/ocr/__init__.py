"""OCR and document-AI data: synthetic pages, olmOCR-bench, OmniDocBench."""
