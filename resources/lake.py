"""The lake: Hive-partitioned Parquet, one file per partition, replaced atomically.

`Lake.root` is a local path (the default, `data/lake`), a `file://` URL, or an object-store
URL that fsspec understands, e.g. `s3://bucket/prefix` (s3fs is installed; other schemes need
their fsspec package). For S3-compatible stores (MinIO, Ceph, R2, ...) set `s3_endpoint_url`;
credentials come from the usual AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
AWS_SESSION_TOKEN, a web-identity token (IRSA), an instance profile, ...), never from config.

Atomic replacement, per backend:

* local: the partition is written to a staging file outside the asset's folder and renamed
  into place, so readers (DuckDB views, analysts) never see a half-written file and a crash
  leaves the previous version intact.
* object store: there is no rename (an S3 "rename" is copy + delete), but a single PUT is
  atomic: readers get the old object or the new one, never a mix, and a failed upload leaves
  the old one. The Parquet file is serialised in memory and stored with one `pipe_file` to its
  final key (a single PUT_OBJECT; past 100 MB a multipart upload, which becomes visible only
  when it completes and is aborted on error, so the same holds). Streaming through
  `fs.open(..., "wb")` would not do: fsspec commits what was written when the file is closed,
  even on an exception, and a crash in the middle would publish a truncated partition.

Consumers never build paths themselves: they ask the lake for URLs (strings: an absolute
local path, or `s3://...`), existence, listings and reads, and call `prepare_duckdb(con)`
before DuckDB reads lake files (it registers the fsspec filesystem on the connection when the
root is remote: DuckDB's httpfs extension cannot be installed offline, and the registered
filesystem also reuses the lake's endpoint and credentials).
"""

from __future__ import annotations

import os
import posixpath
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlparse

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:  # pragma: no cover
    import fsspec

PARTITION_FILE = "data.parquet"
LOCAL_SCHEMES = ("", "file")


def write_parquet(data: pa.Table, where) -> None:
    """zstd Parquet with dictionary pages only for text columns: for floats and ids a
    dictionary rarely pays off, and trying it first costs about a third of the write time."""
    text = [
        f.name
        for f in data.schema
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_dictionary(f.type)
    ]
    pq.write_table(data, where, compression="zstd", use_dictionary=text)  # pyright: ignore[reportArgumentType]  # documented `bool or list`; pyright infers bool from the default


def is_remote_url(url: str) -> bool:
    """True for an object-store URL (s3://, gs://, ...); False for a local path or file:// URL."""
    scheme = urlparse(str(url)).scheme
    # one letter: a Windows drive ("C:\\lake"), not a scheme
    return scheme not in LOCAL_SCHEMES and len(scheme) > 1


def spark_path(url: str) -> str:
    """The path Spark's Hadoop filesystem layer needs: s3:// becomes s3a:// (hadoop-aws's S3A
    connector; Hadoop has no `s3` scheme by default). Other paths are returned unchanged."""
    return "s3a://" + url[len("s3://") :] if url.startswith("s3://") else url


class Lake(dg.ConfigurableResource):
    """Where the lake lives: a local path (default), a file:// URL or an object-store URL.

    `s3_endpoint_url` / `s3_region`: for S3-compatible stores (e.g. http://minio:9000); None
    uses AWS's defaults (AWS_ENDPOINT_URL_S3 / AWS_REGION are honoured by botocore too).
    """

    root: str = "data/lake"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    # ---------------------------------------------------------------- where
    @property
    def is_remote(self) -> bool:
        return is_remote_url(self.root)

    @property
    def url(self) -> str:
        """The root as consumers use it: an absolute local path, or the object-store URL."""
        if self.is_remote:
            return self.root.rstrip("/")
        return str(self._local_root())

    def _local_root(self) -> Path:
        parsed = urlparse(self.root)
        return Path(parsed.path if parsed.scheme == "file" else self.root).resolve()

    @property
    def path(self) -> Path:
        """Local root as a Path (local lakes only; an object-store lake has no local path)."""
        if self.is_remote:
            raise ValueError(
                f"lake {self.root!r} is on an object store: use the URL methods "
                "(url, table_url, partition_url, list_partitions, ...)"
            )
        return self._local_root()

    def table_dir(self, table: str) -> Path:
        """Local lakes only (tests, benchmarks); see `table_url`."""
        return self.path / table

    def partition_file(self, table: str, date: str) -> Path:
        """Local lakes only (tests, benchmarks); see `partition_url`."""
        return self.table_dir(table) / f"date={date}" / PARTITION_FILE

    def join(self, *parts: str) -> str:
        """URL of `parts` under the root (`/`-joined: valid for local paths and URLs)."""
        if self.is_remote:
            return posixpath.join(self.url, *parts)
        return os.path.join(self.url, *parts)

    def table_url(self, table: str) -> str:
        return self.join(table)

    def partition_url(self, table: str, date: str, key: str = "date", file: str = PARTITION_FILE) -> str:
        """The file of partition `key=date` of `table`, e.g. `<root>/raw_labels/date=2026-10-01/data.parquet`."""
        return self.join(table, f"{key}={date}", file)

    def glob(self, table: str) -> str:
        """Glob that matches every partition of `table` (for DuckDB `read_parquet`)."""
        return self.join(table, "*", "*.parquet")

    # ---------------------------------------------------------------- filesystem
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem of the root (fsspec caches instances with equal arguments)."""
        import fsspec

        if not self.is_remote:
            return fsspec.filesystem("file")
        return fsspec.filesystem(self.protocol, **self.storage_options())

    @property
    def protocol(self) -> str:
        return urlparse(self.root).scheme if self.is_remote else "file"

    def storage_options(self) -> dict:
        """fsspec options for the root (also what pandas / dask take as `storage_options`)."""
        if not self.is_remote:
            return {}
        options: dict = {}
        if self.protocol in ("s3", "s3a"):
            # Listings are not cached: other processes (runs, the ingress) write the lake, and a
            # stale listing would hide their partitions from the warehouse and the sensors.
            options["use_listings_cache"] = False
            client_kwargs = {}
            if self.s3_endpoint_url:
                options["endpoint_url"] = self.s3_endpoint_url
            if self.s3_region:
                client_kwargs["region_name"] = self.s3_region
            if client_kwargs:
                options["client_kwargs"] = client_kwargs
        return options

    def _fs_path(self, url: str | Path) -> str:
        """`url` as the filesystem's own path (no scheme: `bucket/key`)."""
        return cast(str, self.fs._strip_protocol(str(url))) if self.is_remote else str(url)  # one path in, one out

    def _url(self, fs_path: str) -> str:
        """Inverse of `_fs_path`: a listing entry back to a URL consumers can pass around."""
        return f"{self.protocol}://{fs_path}" if self.is_remote else fs_path

    def prepare_duckdb(self, con) -> None:
        """Make `con` read this lake's URLs: registers the fsspec filesystem when the root is
        remote (once per connection); nothing to do for a local lake."""
        if not self.is_remote:
            return
        fs = self.fs
        registered = set(con.list_filesystems()) if hasattr(con, "list_filesystems") else set()
        name = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        if name not in registered:
            con.register_filesystem(fs)

    def duckdb_connect(self, *args, **kwargs):
        """`duckdb.connect(...)` with `prepare_duckdb` applied."""
        import duckdb

        con = duckdb.connect(*args, **kwargs)
        try:
            self.prepare_duckdb(con)
        except Exception:
            con.close()
            raise
        return con

    # ---------------------------------------------------------------- write
    def write_partition(self, table: str, date: str, data: pa.Table) -> str:
        return self.write_partition_file(self.partition_url(table, date), data)

    def write_partitions(self, table: str, parts: dict[str, pa.Table], threads: int | None = None) -> dict[str, str]:
        """Several partitions at once (a backfill's days), each atomically as `write_partition`.
        Parquet encoding runs single-threaded per file and releases the GIL, so the days are
        written concurrently, one per CPU."""
        from concurrent.futures import ThreadPoolExecutor

        workers = max(1, min(len(parts), threads or os.cpu_count() or 1))
        if workers == 1:
            return {date: self.write_partition(table, date, data) for date, data in parts.items()}
        with ThreadPoolExecutor(workers, thread_name_prefix="lake-write") as pool:
            futures = {date: pool.submit(self.write_partition, table, date, data) for date, data in parts.items()}
            return {date: f.result() for date, f in futures.items()}

    def write_partition_file(self, target: str | Path, data: pa.Table) -> str:
        """Write `data` to `target` (a URL/path under the root) atomically; returns its URL."""
        if self.is_remote:
            return self._write_remote(str(target), data)
        return str(self._write_local(Path(target), data))

    def _write_local(self, target: Path, data: pa.Table) -> Path:
        """Staged outside the table, then renamed over the target."""
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        tmp = staging / f"{target.parent.name}-{uuid.uuid4().hex}.parquet"
        try:
            write_parquet(data, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def _write_remote(self, target: str, data: pa.Table) -> str:
        """Serialised in memory, then one atomic upload to the final key (see the module doc)."""
        sink = pa.BufferOutputStream()
        write_parquet(data, sink)
        self.fs.pipe_file(self._fs_path(target), sink.getvalue().to_pybytes())
        return target

    def put_file(self, local: str | Path, url: str) -> str:
        """Copy a local file (e.g. an HTML report) to `url` under the lake's filesystem."""
        if self.is_remote:
            self.fs.put_file(str(local), self._fs_path(url))
        else:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            if Path(local).resolve() != Path(url).resolve():
                import shutil

                shutil.copyfile(local, url)
        return url

    # ---------------------------------------------------------------- read and list
    def exists(self, url: str | Path) -> bool:
        if self.is_remote:
            return self.fs.exists(self._fs_path(url))
        return Path(url).exists()

    def has_partition(self, table: str, date: str) -> bool:
        return self.exists(self.partition_url(table, date))

    def read_table(self, url: str | Path, columns: list[str] | None = None) -> pa.Table:
        if self.is_remote:
            return pq.read_table(self._fs_path(url), columns=columns, filesystem=self.fs)
        return pq.read_table(url, columns=columns)

    def read_pandas(self, url: str | Path, columns: list[str] | None = None):
        """`pandas.read_parquet` of a lake file (pandas reaches object stores through fsspec)."""
        import pandas as pd

        if self.is_remote:
            return pd.read_parquet(str(url), columns=columns, storage_options=self.storage_options())
        return pd.read_parquet(url, columns=columns)

    def read_partition(self, table: str, date: str) -> pa.Table:
        return self.read_table(self.partition_url(table, date))

    def list_partitions(self, table: str, key: str = "date") -> list[str]:
        """Values of the `key=value` partition folders of `table`, sorted (one listing call)."""
        prefix = f"{key}="
        if self.is_remote:
            try:
                entries = self.fs.ls(self._fs_path(self.table_url(table)), detail=True)
            except FileNotFoundError:
                return []
            names = [posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory"]
        else:
            folder = self.path / table
            names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        return sorted(n.removeprefix(prefix) for n in names if n.startswith(prefix))

    def files(self, folder_url: str, suffix: str = ".parquet") -> list[str]:
        """URLs of the files directly in `folder_url` ending with `suffix`, sorted ([] if none)."""
        if self.is_remote:
            try:
                entries = self.fs.ls(self._fs_path(folder_url), detail=True)
            except FileNotFoundError:
                return []
            return sorted(self._url(e["name"]) for e in entries if e["type"] == "file" and e["name"].endswith(suffix))
        return [str(f) for f in sorted(Path(folder_url).glob(f"*{suffix}"))]

    def table_files(self, table: str) -> list[str]:
        """Every `<partition>/*.parquet` file of `table`, sorted (one flat listing on an object store)."""
        if not self.is_remote:
            return [str(f) for f in sorted((self.path / table).glob("*/*.parquet"))]
        base = self._fs_path(self.table_url(table)).rstrip("/")
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        return sorted(self._url(f) for f in found if f.endswith(".parquet") and f[len(base) + 1 :].count("/") == 1)

    def read_files(self, urls: list[str], columns: list[str] | None = None) -> pa.Table:
        """Several lake files as one table (`pyarrow.parquet.ParquetDataset`)."""
        if self.is_remote:
            return pq.ParquetDataset([self._fs_path(u) for u in urls], filesystem=self.fs).read(columns=columns)
        return pq.ParquetDataset([str(u) for u in urls]).read(columns=columns)

    def partition_files(self, table: str, dates: list[str], key: str = "date") -> list[str]:
        """Every Parquet file of the partitions `dates` of `table` (several per partition allowed)."""
        return [f for d in dates for f in self.files(self.join(table, f"{key}={d}"))]

    def tables(self) -> list[str]:
        """Tables (top-level folders, not hidden) with at least one `<partition>/*.parquet` file."""
        if not self.is_remote:
            root = self.path
            if not root.is_dir():
                return []
            return [
                t
                for t in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
                if any((root / t).glob("*/*.parquet"))
            ]
        try:
            entries = self.fs.ls(self._fs_path(self.url), detail=True)
        except FileNotFoundError:
            return []
        out = []
        for table in sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory"):
            if table.startswith("."):
                continue
            for part in sorted(self.fs.ls(self._fs_path(self.table_url(table)), detail=True), key=lambda e: e["name"]):
                if part["type"] == "directory" and self.files(self._url(part["name"])):
                    out.append(table)
                    break
        return out

    def existing_partition_files(self, table: str, dates: list[str]) -> list[str]:
        """URLs of `data.parquet` of those `dates` whose partition exists, in the order given."""
        if not self.is_remote:
            return [str(self.partition_file(table, d)) for d in dates if self.partition_file(table, d).exists()]
        # one flat listing of the table (a request per 1000 objects) instead of a HEAD per date
        try:
            found = set(self.fs.find(self._fs_path(self.table_url(table))))
        except FileNotFoundError:
            found = set()
        urls = [self.partition_url(table, d) for d in dates]
        return [u for u in urls if self._fs_path(u) in found]
