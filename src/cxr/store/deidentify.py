"""The de-identification of an exported instance, after the attribute list of DICOM PS3.15's
basic profile for what a chest radiograph carries: person names and the patient module emptied,
PatientID replaced by the worklist's keyed pseudonym, the identifying study, equipment and
institution attributes and every private element removed, and the removal recorded in the
header (PatientIdentityRemoved, DeidentificationMethod)."""

from __future__ import annotations

from pydicom import Dataset

from cxr.dicomnode.spool import strip_demographics

REMOVED = (
    "AccessionNumber", "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "StationName", "DeviceSerialNumber", "OtherPatientIDs", "OtherPatientIDsSequence",
    "PatientAddress", "PatientTelephoneNumbers", "MedicalRecordLocator", "StudyID",
    "RequestAttributesSequence", "ReferencedPatientSequence", "IssuerOfPatientID",
    "PerformedProcedureStepID", "ScheduledProcedureStepID", "RequestedProcedureID",
)  # fmt: skip
METHOD = "cxr export: PS3.15 basic profile subset, keyed pseudonym"  # LO: 64 at most


def deidentify(dataset: Dataset, pseudonym: str | None) -> Dataset:
    """`dataset` changed in place (and returned) so that it names no one."""
    strip_demographics(dataset)
    dataset.PatientID = pseudonym or ""
    dataset.PatientName = pseudonym or ""
    for keyword in REMOVED:
        if keyword in dataset:
            delattr(dataset, keyword)
    dataset.remove_private_tags()
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = METHOD
    return dataset
