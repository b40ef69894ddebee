# the stand-in original's code: gpu_session.sh asks for this file before it runs the comparisons
