# Where real corpora live on this machine. Leave a path empty to use the embedded corpus that
# stage 1 synthesises offline with espeak-ng (real zh-en sentence pairs, 32 bilingual speakers).
# Setting any path selects that corpus in local/data.sh (preparing real corpora is not implemented yet).

# LibriTTS (English TTS, 24 kHz, ~585 h): the directory holding train-clean-100/, dev-clean/, ...
LIBRITTS=
# LibriSpeech (English ASR, 16 kHz, ~960 h): the directory holding train-clean-100/, dev-clean/, ...
LIBRISPEECH=
# AISHELL-3 (Mandarin multi-speaker TTS, 44.1 kHz, ~85 h, 218 speakers): holds train/ and test/
AISHELL3=
# WenetSpeech (Mandarin, 10k+ h; the paper's Chinese data): holds audio/ and WenetSpeech.json
WENETSPEECH=
# EMIME (bilingual zh-en speakers, the paper's cross-lingual test set): holds the Mandarin/English wav folders
EMIME=
