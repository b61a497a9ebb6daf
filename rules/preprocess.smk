# Preprocessing (paper Sec. IV-A, Appendix C): 25 fps CFR face crops + 16 kHz mono audio.
# (being written; see issue "pipeline spine")
