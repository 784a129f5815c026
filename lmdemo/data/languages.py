"""The languages Translate offers, by ISO 639-1 code, with the other codes model families write them in."""

from __future__ import annotations

# The first five have few-shot examples (translation_shots.json); the rest are for translation models that
# know them (Marian pairs, NLLB, mBART, M2M100, T5's en-ro); a language model gets them zero-shot.
LANGUAGES: dict[str, str] = {
    "en": "English", "fr": "French", "de": "German", "es": "Spanish", "zh": "Chinese", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "ja": "Japanese", "ar": "Arabic", "ro": "Romanian",
}
# ISO 639-1 -> the 639-2/3 codes model families use (NLLB "fra_Latn", opus-mt "fra").
ISO3: dict[str, tuple[str, ...]] = {
    "en": ("eng",), "fr": ("fra", "fre"), "de": ("deu", "ger"), "es": ("spa",), "zh": ("zho", "cmn", "chi"),
    "it": ("ita",), "pt": ("por",), "nl": ("nld", "dut"), "ru": ("rus",), "ja": ("jpn",), "ar": ("arb", "ara"),
    "ro": ("ron", "rum"),
}
NO_SPACE = {"zh", "ja"}  # scripts written without spaces between sentences
