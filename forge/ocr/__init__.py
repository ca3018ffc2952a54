"""OCR engines that are not trained here: Tesseract as a classical baseline beside the models
(`baseline`) and as a generation-only teacher (`forge.teachers.backends.tesseract`)."""
