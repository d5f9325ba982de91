"""STOW, QIDO and WADO against the gateway with the standard Python client.

Usage: dicomweb_roundtrip.py URL TOKEN CA_PEM DIR_OF_PART10_FILES
Prints one JSON object describing what came back; the Rust test asserts on it.
"""
import hashlib
import io
import json
import pathlib
import sys

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient


def main() -> None:
    url, token, ca, folder = sys.argv[1:5]
    session = requests.Session()
    session.verify = ca
    session.headers["Authorization"] = f"Bearer {token}"
    client = DICOMwebClient(url=url, session=session)

    files = sorted(pathlib.Path(folder).glob("*.dcm"))
    datasets = [pydicom.dcmread(f) for f in files]
    stow = client.store_instances(datasets=datasets)
    referenced = stow.get("ReferencedSOPSequence", [])

    study = datasets[0].StudyInstanceUID
    series = datasets[0].SeriesInstanceUID
    studies = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    by_patient = client.search_for_studies(search_filters={"PatientID": datasets[0].PatientID})
    series_found = client.search_for_series(study_instance_uid=study)
    instances_found = client.search_for_instances(study_instance_uid=study, series_instance_uid=series)

    first = datasets[0]
    retrieved = client.retrieve_instance(study, series, first.SOPInstanceUID)
    metadata = client.retrieve_instance_metadata(study, series, first.SOPInstanceUID)
    series_instances = client.retrieve_series(study, series)

    def pixels(ds: pydicom.Dataset) -> str:
        return hashlib.sha256(ds.PixelData).hexdigest()

    json.dump(
        {
            "stored": len(referenced),
            "studies": len(studies),
            "studies_by_patient": len(by_patient),
            "study_related_instances": studies[0].get("00201208", {}).get("Value", [None])[0] if studies else None,
            "series": len(series_found),
            "instances": len(instances_found),
            "retrieved_sop_instance_uid": retrieved.SOPInstanceUID,
            "retrieved_pixels_match": pixels(retrieved) == pixels(first),
            "metadata_sop_instance_uid": metadata.get("00080018", {}).get("Value", [None])[0],
            "series_retrieved": len(series_instances),
            "series_pixels_match": sorted(pixels(d) for d in series_instances) == sorted(pixels(d) for d in datasets),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
