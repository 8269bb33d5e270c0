"""OpenLineage names for what the operator reads and writes.

Pure module: no Airflow and no OpenLineage import at module level, so the provider works without
the OpenLineage provider installed. :func:`operator_lineage` imports the OpenLineage classes only
when it is called, which the OpenLineage provider does after a task completes.

Naming follows the OpenLineage dataset naming spec
(https://openlineage.io/docs/spec/naming/): a local file is namespace ``file`` and its absolute
path; an S3 object is namespace ``s3://<bucket>`` and its key; other object stores
``<scheme>://<bucket>`` and the key. The DataForSEO endpoint is namespace ``<API base URL>``
(``https://api.dataforseo.com``, the sandbox or the emulator) and the endpoint path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage


class DatasetName(NamedTuple):
    """An OpenLineage dataset identity.

    :ivar namespace: e.g. ``"s3://bucket"``, ``"file"``, ``"https://api.dataforseo.com"``.
    :ivar name: e.g. ``"backlinks/run1/bulk_pages_summary.jsonl"``, ``"/data/rows.jsonl"``.
    """

    namespace: str
    name: str


#: Object stores whose namespace is ``<scheme>://<bucket>`` (OpenLineage naming spec).
_BUCKET_SCHEMES = {
    "s3": "s3",
    "s3a": "s3",
    "s3n": "s3",
    "gs": "gs",
    "gcs": "gs",
    "abfs": "abfs",
    "az": "abfs",
}


def storage_dataset(uri: str) -> DatasetName:
    """The OpenLineage name of an ObjectStoragePath URI.

    An Airflow connection id in the URI (``s3://aws_conn@bucket/key``) is not part of the dataset's
    identity and is dropped; so are credentials and query strings.

    :param uri: e.g. ``"s3://aws_default@bucket/prefix/rows.jsonl"`` or ``"file:///tmp/rows.jsonl"``;
        a bare absolute path counts as a local file.
    :return: ``DatasetName("s3://bucket", "prefix/rows.jsonl")`` or
        ``DatasetName("file", "/tmp/rows.jsonl")``.
    :raises ValueError: for an empty URI or one without a bucket/host where one is needed.
    """
    text = str(uri).strip()
    if not text:
        raise ValueError("an empty URI names no dataset")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("", "file", "local"):
        path = parts.path if scheme else text
        if parts.netloc and parts.netloc not in ("localhost",):
            return DatasetName(f"file://{parts.netloc}", path)
        return DatasetName("file", path)
    host = parts.hostname or ""  # hostname drops "conn_id@" and ":port"; it is lowercased
    bucket = parts.netloc.rsplit("@", 1)[-1]  # keep the bucket's case as written
    if not host:
        raise ValueError(f"{uri!r} names no bucket or host")
    key = parts.path.lstrip("/")
    if scheme in _BUCKET_SCHEMES:
        return DatasetName(f"{_BUCKET_SCHEMES[scheme]}://{bucket}", key or "/")
    return DatasetName(f"{scheme}://{bucket}", parts.path or "/")


def endpoint_dataset(base_url: str, endpoint: str) -> DatasetName:
    """The OpenLineage name of a DataForSEO endpoint.

    :param base_url: the API root, e.g. ``"https://api.dataforseo.com"`` (credentials dropped).
    :param endpoint: the API path, e.g. ``"/v3/backlinks/bulk_pages_summary/live"``.
    :return: ``DatasetName("https://api.dataforseo.com", "/v3/backlinks/bulk_pages_summary/live")``.
    """
    parts = urlsplit(base_url.strip().rstrip("/"))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return DatasetName(f"{parts.scheme or 'https'}://{netloc}", "/" + endpoint.lstrip("/"))


def operator_lineage(
    *, base_url: str, endpoint: str, output_uri: str | None, rows: int | None = None
) -> OperatorLineage[Any, Any]:
    """Build the ``OperatorLineage`` the OpenLineage provider emits for a completed fetch.

    Needs ``apache-airflow-providers-openlineage`` (the ``[openlineage]`` extra); only the
    OpenLineage provider calls it, so the import happens here and not at module level.

    :param base_url: the API root the hook used.
    :param endpoint: the API path posted to.
    :param output_uri: the rows file written, or ``None`` when rows went to XCom (no output dataset).
    :param rows: rows written (an ``outputStatistics`` facet ``rowCount``), if known.
    :return: inputs ``[the endpoint]``, outputs ``[the rows file]`` (or ``[]``).
    """
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset

    source = endpoint_dataset(base_url, endpoint)
    inputs = [InputDataset(namespace=source.namespace, name=source.name)]
    outputs: list[OutputDataset] = []
    if output_uri:
        target = storage_dataset(output_uri)
        facets: dict[str, Any] = {}
        if rows is not None:
            facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=rows
            )
        outputs.append(OutputDataset(namespace=target.namespace, name=target.name, outputFacets=facets))
    return OperatorLineage(inputs=inputs, outputs=outputs)
