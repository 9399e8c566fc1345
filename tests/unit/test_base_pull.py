"""The built-in base's GGUF conversion reads the file once, and leaves the gguf module as it found it."""

from __future__ import annotations

import gguf

from lorafleet.platform.base_pull import _gguf_parsed_once, gguf_path


def test_the_gguf_file_is_parsed_once_during_a_conversion_only() -> None:
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    path = gguf_path()
    with _gguf_parsed_once():
        first = gguf.GGUFReader(path)
        assert gguf.GGUFReader(path) is first  # tokenizer, config and weights share one parse
        arch = next(iter(gguf.MODEL_ARCH_NAMES))
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
        assert "tokenizer.ggml.tokens" in first.fields
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader, name_map)
