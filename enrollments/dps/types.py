"""Dataclasses for the DPS service API 2021-10-01 and the ``DpsApi`` protocol of its client.

Each model reads and writes the camelCase JSON of the service. A round trip loses nothing:
keys the model does not know are kept in ``extra``, and keys DPS sent as ``null`` (DPS echoes
``"provisioningStatus": null`` on some records) are written back as ``null``,
while fields that were absent stay absent. Timestamps stay strings so their seven fractional
digits survive; :func:`parse_dps_datetime` turns them into ``datetime`` for display.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar, runtime_checkable

AttestationType = Literal["none", "tpm", "x509", "symmetricKey"]
ProvisioningStatus = Literal["enabled", "disabled"]
AllocationPolicy = Literal["hashed", "geoLatency", "static", "custom"]
BulkMode = Literal["create", "update", "updateIfMatchETag", "delete"]
RegistrationStatus = Literal["unassigned", "assigning", "assigned", "failed", "disabled"]

ATTESTATION_TYPES: tuple[str, ...] = ("none", "tpm", "x509", "symmetricKey")
GROUP_ATTESTATION_TYPES: tuple[str, ...] = ("x509", "symmetricKey")
PROVISIONING_STATUSES: tuple[str, ...] = ("enabled", "disabled")
ALLOCATION_POLICIES: tuple[str, ...] = ("hashed", "geoLatency", "static", "custom")
BULK_MODES: tuple[str, ...] = ("create", "update", "updateIfMatchETag", "delete")
READ_ONLY_KEYS: frozenset[str] = frozenset(
    {"registrationState", "createdDateTimeUtc", "lastUpdatedDateTimeUtc"}
)


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


# JSON values that need no copy because they are immutable (bool is an int). Most values of a
# page of records are, and deepcopy's bookkeeping on each was 3 % of the list page.
_SCALARS = (str, int, float)


def _meta(model: type[DpsModel] | None = None, *, many: bool = False) -> dict[str, Any]:
    """Return field metadata naming the nested ``model`` (a list of them when ``many``)."""
    return {"model": model, "many": many}


@dataclass(kw_only=True)
class DpsModel:
    """Base of every DPS model: generic camelCase JSON mapping that keeps unknown keys."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    explicit_nulls: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)

    _BASE_FIELDS: ClassVar[frozenset[str]] = frozenset({"extra", "explicit_nulls"})

    @classmethod
    @cache
    def _json_fields(cls) -> tuple[tuple[str, str, type[DpsModel] | None, bool], ...]:
        return tuple(
            (f.name, _camel(f.name), f.metadata.get("model"), bool(f.metadata.get("many")))
            for f in dataclasses.fields(cls)
            if f.name not in cls._BASE_FIELDS
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Build the model from DPS JSON; raise ``ValueError`` when it is not that shape."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        nulls: set[str] = set()
        known: set[str] = set()
        for attr, key, model, many in cls._json_fields():
            if key not in data:
                continue
            known.add(key)
            value = data[key]
            if value is None:
                nulls.add(key)
            elif model is not None and many:
                if not isinstance(value, list):
                    raise ValueError(f"{cls.__name__}.{key}: expected a JSON array")
                value = [model.from_json(item) for item in value]
            elif model is not None:
                value = model.from_json(value)
            elif not isinstance(value, _SCALARS):
                value = copy.deepcopy(value)
            kwargs[attr] = value
        extra = {k: copy.deepcopy(v) for k, v in data.items() if k not in known}
        try:
            return cls(**kwargs, extra=extra, explicit_nulls=frozenset(nulls))
        except TypeError as exc:  # a required key is missing
            raise ValueError(f"{cls.__name__}: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        """Return the DPS JSON of this model (absent fields omitted, sent nulls kept)."""
        out: dict[str, Any] = {}
        for attr, key, model, many in self._json_fields():
            value = getattr(self, attr)
            if value is None:
                if key in self.explicit_nulls:
                    out[key] = None
                continue
            if model is not None and many:
                out[key] = [item.to_json() for item in value]
            elif model is not None:
                out[key] = value.to_json()
            else:
                out[key] = copy.deepcopy(value)
        for key, value in self.extra.items():
            out.setdefault(key, copy.deepcopy(value))
        return out


#
# Attestation
#


@dataclass(kw_only=True)
class X509CertificateInfo(DpsModel):
    """What DPS parsed from a certificate; DPS returns this instead of the certificate itself."""

    subject_name: str | None = field(default=None, metadata=_meta())
    sha1_thumbprint: str | None = field(default=None, metadata=_meta())
    sha256_thumbprint: str | None = field(default=None, metadata=_meta())
    issuer_name: str | None = field(default=None, metadata=_meta())
    not_before_utc: str | None = field(default=None, metadata=_meta())
    not_after_utc: str | None = field(default=None, metadata=_meta())
    serial_number: str | None = field(default=None, metadata=_meta())
    version: int | None = field(default=None, metadata=_meta())


@dataclass(kw_only=True)
class X509CertificateWithInfo(DpsModel):
    """A certificate sent as PEM or base64 (``certificate``) and DPS's reading of it (``info``)."""

    certificate: str | None = field(default=None, metadata=_meta())
    info: X509CertificateInfo | None = field(default=None, metadata=_meta(X509CertificateInfo))


@dataclass(kw_only=True)
class X509Certificates(DpsModel):
    """Primary and secondary certificates."""

    primary: X509CertificateWithInfo | None = field(
        default=None, metadata=_meta(X509CertificateWithInfo)
    )
    secondary: X509CertificateWithInfo | None = field(
        default=None, metadata=_meta(X509CertificateWithInfo)
    )


@dataclass(kw_only=True)
class X509CAReferences(DpsModel):
    """Names of CA certificates already uploaded to and verified in the DPS instance."""

    primary: str | None = field(default=None, metadata=_meta())
    secondary: str | None = field(default=None, metadata=_meta())


@dataclass(kw_only=True)
class X509Attestation(DpsModel):
    """X.509 attestation: client certificates, signing certificates or CA references."""

    client_certificates: X509Certificates | None = field(
        default=None, metadata=_meta(X509Certificates)
    )
    signing_certificates: X509Certificates | None = field(
        default=None, metadata=_meta(X509Certificates)
    )
    ca_references: X509CAReferences | None = field(default=None, metadata=_meta(X509CAReferences))


@dataclass(kw_only=True)
class TpmAttestation(DpsModel):
    """TPM attestation: the endorsement key (public part, base64) and optional storage root key."""

    endorsement_key: str = field(metadata=_meta())
    storage_root_key: str | None = field(default=None, metadata=_meta())


@dataclass(kw_only=True)
class SymmetricKeyAttestation(DpsModel):
    """Symmetric keys (base64). Kept out of ``repr`` so a logged model never shows them."""

    primary_key: str | None = field(default=None, repr=False, metadata=_meta())
    secondary_key: str | None = field(default=None, repr=False, metadata=_meta())


@dataclass(kw_only=True)
class AttestationMechanism(DpsModel):
    """How devices of an enrollment prove who they are."""

    type: str = field(metadata=_meta())
    tpm: TpmAttestation | None = field(default=None, metadata=_meta(TpmAttestation))
    x509: X509Attestation | None = field(default=None, metadata=_meta(X509Attestation))
    symmetric_key: SymmetricKeyAttestation | None = field(
        default=None, metadata=_meta(SymmetricKeyAttestation)
    )

    @classmethod
    def for_symmetric_key(
        cls, primary_key: str | None = None, secondary_key: str | None = None
    ) -> AttestationMechanism:
        """Return a symmetric-key attestation; DPS generates the keys left as ``None``."""
        return cls(
            type="symmetricKey",
            symmetric_key=SymmetricKeyAttestation(
                primary_key=primary_key, secondary_key=secondary_key
            ),
        )

    @classmethod
    def for_tpm(
        cls, endorsement_key: str, storage_root_key: str | None = None
    ) -> AttestationMechanism:
        """Return a TPM attestation."""
        return cls(
            type="tpm",
            tpm=TpmAttestation(endorsement_key=endorsement_key, storage_root_key=storage_root_key),
        )

    @classmethod
    def for_x509_client_certificates(
        cls, primary: str, secondary: str | None = None
    ) -> AttestationMechanism:
        """Return an X.509 attestation by the device's own certificate(s) (individual only)."""
        return cls(
            type="x509", x509=X509Attestation(client_certificates=_certs(primary, secondary))
        )

    @classmethod
    def for_x509_signing_certificates(
        cls, primary: str, secondary: str | None = None
    ) -> AttestationMechanism:
        """Return an X.509 attestation by a root or intermediate CA certificate."""
        return cls(
            type="x509", x509=X509Attestation(signing_certificates=_certs(primary, secondary))
        )

    @classmethod
    def for_x509_ca_references(
        cls, primary: str, secondary: str | None = None
    ) -> AttestationMechanism:
        """Return an X.509 attestation by names of CA certificates uploaded to DPS."""
        return cls(
            type="x509",
            x509=X509Attestation(
                ca_references=X509CAReferences(primary=primary, secondary=secondary)
            ),
        )

    def without_secrets(self) -> AttestationMechanism:
        """Return a copy with symmetric keys removed (for audit rows and logs)."""
        clean = copy.deepcopy(self)
        if clean.symmetric_key is not None:
            clean.symmetric_key = SymmetricKeyAttestation()
        return clean


def _certs(primary: str, secondary: str | None) -> X509Certificates:
    return X509Certificates(
        primary=X509CertificateWithInfo(certificate=primary),
        secondary=X509CertificateWithInfo(certificate=secondary) if secondary else None,
    )


#
# Enrollment settings
#


@dataclass(kw_only=True)
class DeviceCapabilities(DpsModel):
    """Device capabilities; only IoT Edge exists."""

    iot_edge: bool = field(metadata=_meta())


@dataclass(kw_only=True)
class ReprovisionPolicy(DpsModel):
    """What DPS does when a device provisions again (API.md §4.5)."""

    update_hub_assignment: bool = field(metadata=_meta())
    migrate_device_data: bool = field(metadata=_meta())


@dataclass(kw_only=True)
class CustomAllocationDefinition(DpsModel):
    """The webhook that picks the hub when ``allocationPolicy`` is ``custom``."""

    webhook_url: str = field(metadata=_meta())
    api_version: str = field(metadata=_meta())


@dataclass(kw_only=True)
class InitialTwinProperties(DpsModel):
    """Initial twin properties; only ``desired`` can be seeded."""

    desired: dict[str, Any] | None = field(default=None, metadata=_meta())


@dataclass(kw_only=True)
class InitialTwin(DpsModel):
    """Initial device twin: tags and desired properties."""

    tags: dict[str, Any] | None = field(default=None, metadata=_meta())
    properties: InitialTwinProperties | None = field(
        default=None, metadata=_meta(InitialTwinProperties)
    )

    @classmethod
    def of(
        cls, tags: dict[str, Any] | None = None, desired: dict[str, Any] | None = None
    ) -> InitialTwin:
        """Return a twin from plain tags and desired properties."""
        return cls(
            tags=tags,
            properties=InitialTwinProperties(desired=desired) if desired is not None else None,
        )

    @property
    def desired(self) -> dict[str, Any] | None:
        """Return the desired properties, if any."""
        return self.properties.desired if self.properties else None


#
# Records
#


@dataclass(kw_only=True)
class DeviceRegistrationState(DpsModel):
    """A device's registration record (all fields are set by DPS)."""

    registration_id: str | None = field(default=None, metadata=_meta())
    created_date_time_utc: str | None = field(default=None, metadata=_meta())
    assigned_hub: str | None = field(default=None, metadata=_meta())
    device_id: str | None = field(default=None, metadata=_meta())
    status: str | None = field(default=None, metadata=_meta())
    substatus: str | None = field(default=None, metadata=_meta())
    error_code: int | None = field(default=None, metadata=_meta())
    error_message: str | None = field(default=None, metadata=_meta())
    last_updated_date_time_utc: str | None = field(default=None, metadata=_meta())
    etag: str | None = field(default=None, metadata=_meta())
    payload: dict[str, Any] | None = field(default=None, metadata=_meta())


@dataclass(kw_only=True)
class _Enrollment(DpsModel):
    """The settings individual enrollments and enrollment groups share (API.md §4, §5)."""

    key_field: ClassVar[str]

    attestation: AttestationMechanism = field(metadata=_meta(AttestationMechanism))
    capabilities: DeviceCapabilities | None = field(
        default=None, metadata=_meta(DeviceCapabilities)
    )
    iot_hub_host_name: str | None = field(default=None, metadata=_meta())
    initial_twin: InitialTwin | None = field(default=None, metadata=_meta(InitialTwin))
    etag: str | None = field(default=None, metadata=_meta())
    provisioning_status: str | None = field(default=None, metadata=_meta())
    reprovision_policy: ReprovisionPolicy | None = field(
        default=None, metadata=_meta(ReprovisionPolicy)
    )
    created_date_time_utc: str | None = field(default=None, metadata=_meta())
    last_updated_date_time_utc: str | None = field(default=None, metadata=_meta())
    allocation_policy: str | None = field(default=None, metadata=_meta())
    iot_hubs: list[str] | None = field(default=None, metadata=_meta())
    custom_allocation_definition: CustomAllocationDefinition | None = field(
        default=None, metadata=_meta(CustomAllocationDefinition)
    )

    @property
    def id(self) -> str:
        """Return the key used in the URL."""
        return str(getattr(self, self.key_field))


@dataclass(kw_only=True)
class IndividualEnrollment(_Enrollment):
    """An individual enrollment; ``registration_id`` is its key."""

    key_field: ClassVar[str] = "registration_id"

    registration_id: str = field(metadata=_meta())
    device_id: str | None = field(default=None, metadata=_meta())
    registration_state: DeviceRegistrationState | None = field(
        default=None, metadata=_meta(DeviceRegistrationState)
    )
    optional_device_information: dict[str, Any] | None = field(default=None, metadata=_meta())


@dataclass(kw_only=True)
class EnrollmentGroup(_Enrollment):
    """An enrollment group (X.509 or symmetric key); ``enrollment_group_id`` is its key."""

    key_field: ClassVar[str] = "enrollment_group_id"

    enrollment_group_id: str = field(metadata=_meta())


#
# Bulk and query results
#


@dataclass(kw_only=True)
class BulkEnrollmentOperationError(DpsModel):
    """One failed item of a bulk call; ``registration_id`` or ``enrollment_group_id`` is set."""

    registration_id: str | None = field(default=None, metadata=_meta())
    enrollment_group_id: str | None = field(default=None, metadata=_meta())
    error_code: int | None = field(default=None, metadata=_meta())
    error_status: str | None = field(default=None, metadata=_meta())

    @property
    def id(self) -> str | None:
        """Return the id of the failed item, whichever kind it is."""
        return self.registration_id or self.enrollment_group_id


@dataclass(kw_only=True)
class BulkEnrollmentOperationResult(DpsModel):
    """Result of a bulk call: HTTP 200 even when items failed; see ``errors``."""

    is_successful: bool = field(metadata=_meta())
    errors: list[BulkEnrollmentOperationError] | None = field(
        default=None, metadata=_meta(BulkEnrollmentOperationError, many=True)
    )

    def failed_ids(self) -> set[str]:
        """Return the ids of the items that failed."""
        return {e.id for e in self.errors or () if e.id}


T = TypeVar("T")


@dataclass
class QueryPage(Generic[T]):
    """One page of a query; ``continuation_token`` is ``None`` on the last page."""

    items: list[T]
    continuation_token: str | None = None
    item_type: str | None = None
    max_item_count: int | None = None

    @property
    def has_more(self) -> bool:
        """Return whether another page follows."""
        return bool(self.continuation_token)


_FRACTION = re.compile(r"\.(\d+)")


def parse_dps_datetime(value: str | None) -> datetime | None:
    """Parse a DPS timestamp (up to 7 fractional digits, ``Z``) into an aware ``datetime``."""
    if not value:
        return None
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.strip())
    text = text.replace("Z", "+00:00").replace("z", "+00:00")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


#
# The client's interface, for fakes in service tests
#


@runtime_checkable
class DpsApi(Protocol):
    """The 15 operations of the DPS service API, as ``DpsClient`` offers them."""

    def enrollment_get(self, registration_id: str) -> IndividualEnrollment: ...

    def enrollment_put(
        self, enrollment: IndividualEnrollment, *, if_match: str | None = None
    ) -> IndividualEnrollment: ...

    def enrollment_delete(self, registration_id: str, *, if_match: str | None = None) -> None: ...

    def enrollment_query(
        self,
        *,
        page_size: int | None = None,
        continuation: str | None = None,
        query: str = "SELECT *",
    ) -> QueryPage[IndividualEnrollment]: ...

    def enrollment_bulk(
        self, mode: str, enrollments: Sequence[IndividualEnrollment]
    ) -> BulkEnrollmentOperationResult: ...

    def enrollment_attestation_mechanism(self, registration_id: str) -> AttestationMechanism: ...

    def group_get(self, group_id: str) -> EnrollmentGroup: ...

    def group_put(
        self, group: EnrollmentGroup, *, if_match: str | None = None
    ) -> EnrollmentGroup: ...

    def group_delete(self, group_id: str, *, if_match: str | None = None) -> None: ...

    def group_query(
        self,
        *,
        page_size: int | None = None,
        continuation: str | None = None,
        query: str = "SELECT *",
    ) -> QueryPage[EnrollmentGroup]: ...

    def group_bulk(
        self, mode: str, groups: Sequence[EnrollmentGroup]
    ) -> BulkEnrollmentOperationResult: ...

    def group_attestation_mechanism(self, group_id: str) -> AttestationMechanism: ...

    def registration_get(self, registration_id: str) -> DeviceRegistrationState: ...

    def registration_delete(self, registration_id: str, *, if_match: str | None = None) -> None: ...

    def registration_query_for_group(
        self,
        group_id: str,
        *,
        page_size: int | None = None,
        continuation: str | None = None,
    ) -> QueryPage[DeviceRegistrationState]: ...
