"""playclips: classify basketball plays from video (Beam records job + Keras trainer).

Versions are pinned and known to work together on Python 3.11: tensorflow-io
0.37.1 (its last release) is built for TensorFlow 2.16.x only, so TensorFlow
stays on 2.16 and numpy/protobuf stay on the ranges that both TensorFlow 2.16
and Beam accept. trainer/training/compat.py holds the Keras/TF patches, each guarded by
the version range it was verified for: moving keras or tensorflow past a range
makes training fail with a RuntimeError that names the patch to re-check.
"""
import setuptools

REQUIRED = [
    # 2.16.2: the newest TensorFlow that tensorflow-io 0.37.1's .so files load with.
    # The CPU build: the default build prints three "Unable to register cuDNN/cuFFT/cuBLAS
    # factory" errors on every import, even on a machine without a GPU and at
    # TF_CPP_MIN_LOG_LEVEL=2 (and so does every Beam worker process that loads the base).
    # GPU machines: the [gpu] extra (see the Dockerfile).
    "tensorflow-cpu==2.16.2",
    # 3.15.1: the newest Keras (and the newest available); tests pass with TF 2.16.2.
    # Needs trainer/training/compat.py's patches for keras#20585 (still open); the
    # is_tf_dataset patch is gone (keras#20134, fixed in 3.9). 3.15 needs Python >= 3.11.
    "keras==3.15.1",
    # 0.37.1: the last tensorflow-io release, built against TF 2.16.
    "tensorflow-io==0.37.1",
    "tensorflow-io-gcs-filesystem==0.37.1",
    # 1.26.4: TensorFlow 2.16 requires numpy < 2.
    "numpy==1.26.4",
    # 4.25.9: TensorFlow 2.16 requires protobuf < 5; Beam accepts 4.25.
    "protobuf==4.25.9",
    # 2.72.0: the newest Beam whose [gcp] extra still resolves with protobuf 4.25
    # (2.76/2.77[gcp] need google-cloud-bigtable >= 2.42/2.44, which need protobuf >= 6.33;
    # pip did not resolve 2.73-2.75[gcp] within 4 min). 2.77 also logs an "apitools not
    # found" warning on import that breaks the one-line CLI errors. After 2.68 crcmod
    # (WriteToTFRecord's CRC) moved to the [tfrecord] extra; without it the job fails.
    "apache-beam[tfrecord]==2.72.0",
    # 1.9.0: the fast CRC that Beam's TFRecord sink and source look for (without it Beam
    # warns "Couldn't find python-snappy or google-crc32c" and uses a slower one).
    "google-crc32c==1.9.0",
    "av==14.0.1",
    # 12.3.0: Beam >= 2.72 requires pillow >= 12.1.1, < 13.
    "pillow==12.3.0",
    "matplotlib==3.9.2",
    # 1.4.7: the KerasTuner tested (python -m trainer.tune); its Bayesian oracle needs scipy and
    # scikit-learn (the keras-tuner[bayesian] extra, unpinned there): 1.14.1 and 1.5.2 are the
    # versions tested here with numpy 1.26.4 (both accept numpy < 2).
    "keras-tuner==1.4.7",
    "scipy==1.14.1",
    "scikit-learn==1.5.2",
    # 0.1.0.dev6: the newest cloudml-hypertune (all its releases are .dev): a Vertex AI tuning trial
    # reports val_accuracy through it (trainer/training/hypertune.py).
    "cloudml-hypertune==0.1.0.dev6",
]

EXTRAS = {
    # hypothesis 6.170.17: the newest release; tests/test_properties.py. pytest-xdist 3.8.0:
    # `make test` runs the suite on two workers.
    "test": ["pytest==8.3.4", "hypothesis==6.170.17", "pytest-xdist==3.8.0"],
    "gcp": ["apache-beam[gcp]==2.72.0"],
    # The CUDA build of the same TensorFlow, for GPU workers and trainers: install it after
    # the package (`pip install --no-deps --force-reinstall 'tensorflow[and-cuda]==2.16.2'`
    # replaces tensorflow-cpu's files), as the Dockerfile does on its GPU base.
    "gpu": ["tensorflow[and-cuda]==2.16.2"],
    # 3.5.8: the newest Spark 3.5 release; Beam 2.72's Spark runner (beam-runners-spark-3) is
    # for Spark 3 with Scala 2.12, which pyspark 3.5 ships. Its distribution (bin/spark-class,
    # jars/) starts the standalone master and worker of tests/test_engines.py.
    # apache-flink-libraries 1.20.5: Flink's distribution jars (flink-dist, log4j, BashJavaUtils)
    # as PyFlink ships them, without PyFlink itself (which pins an older Beam); 1.20 is the
    # newest Flink that Beam 2.72 publishes a job server for, 1.20.5 its newest release.
    "engines": ["pyspark==3.5.8", "apache-flink-libraries==1.20.5"],
}

setuptools.setup(
    name="playclips",
    version="0.1.0",
    description="Classify basketball plays from video clips: Beam TFRecords job and tf.distribute trainer.",
    # 3.11 only: the one version tested. keras 3.15 requires >= 3.11 (and the code
    # uses zip(strict=True), 3.10+); 3.12 is untested.
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["schemas", "schemas.*", "media", "media.*", "backbone", "backbone.*", "demo_data", "demo_data.*", "beam_jobs", "beam_jobs.*", "trainer", "trainer.*"]),
    install_requires=REQUIRED,
    extras_require=EXTRAS,
)
