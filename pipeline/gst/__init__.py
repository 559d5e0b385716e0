"""GStreamer through PyGObject (`pip install 'mbunet[gst]'`): Jetson CSI cameras, V4L2 cameras, hardware decode of
files and RTSP, user pipelines ending in appsink (source.py), and the rtp:// and rtsp:// network outputs
(output.py). The OpenCV wheels from PyPI have no GStreamer, so mbunet talks to it directly, as jetson-utils does.

runtime.py loads gi and says in one line what to install when a part is missing; pipelines.py writes the pipeline
descriptions (plain strings, testable without GStreamer); choose.py decides which sources go through here.
"""
