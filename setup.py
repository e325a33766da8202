"""playclips: classify basketball plays from video (Beam records job + Keras trainer).

Versions are pinned and known to work together: tensorflow-io 0.37.1 (its last
release) is built for TensorFlow 2.16.x only, so TensorFlow stays on 2.16 and
numpy/protobuf stay on the ranges that both TensorFlow 2.16 and Beam accept.
"""
import setuptools

REQUIRED = [
    "tensorflow==2.16.2",
    "keras==3.6.0",
    "tensorflow-io==0.37.1",
    "tensorflow-io-gcs-filesystem==0.37.1",
    "numpy==1.26.4",
    "protobuf==4.25.9",
    "apache-beam==2.61.0",
    "av==14.0.1",
    "pillow==10.4.0",
    "matplotlib==3.9.2",
]

EXTRAS = {
    "test": ["pytest==8.3.4"],
    "gcp": ["apache-beam[gcp]==2.61.0"],
}

setuptools.setup(
    name="playclips",
    version="0.1.0",
    description="Classify basketball plays from video clips: Beam TFRecords job and tf.distribute trainer.",
    python_requires=">=3.9,<3.13",
    packages=setuptools.find_packages(include=["schemas", "schemas.*", "media", "media.*", "beam_jobs", "beam_jobs.*", "trainer", "trainer.*"]),
    install_requires=REQUIRED,
    extras_require=EXTRAS,
)
