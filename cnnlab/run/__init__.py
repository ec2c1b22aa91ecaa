"""The run folder, the one hand-off: files (names, model.json schema), checkpoint, writer, folder (reading)."""
