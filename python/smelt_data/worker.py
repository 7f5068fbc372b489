"""smelt's Python worker: runs a user's function, or an installed datatrove step, over the Arrow
batches of a `python` or `datatrove` stage. smelt embeds this file in its binary and starts it as
`python -c <this file> serve` (and `... probe <request>` at validate time); it needs only pyarrow.

    smelt ──C config (JSON)──────────────► worker ──R ready (JSON) | E error (JSON)
    smelt ──B batch (Arrow IPC stream)───► worker ──B result (Arrow IPC stream) | E error (JSON)
    smelt ──M batch in shared memory─────► worker ──B result | E error
      ... one reply per batch, in order; end of input: the worker exits

`serve FD [FD]` names the memfds that smelt shares with this worker: an M frame's payload is the IPC stream's
length, the memfd's size and which memfd (its place in the arguments; 8 bytes little-endian each, the last one
absent for the first memfd), the stream being at its start. The batch is read from the mapping without a copy.
With two memfds, smelt writes a call's second part into one while this worker runs the first part from the other,
and sends its frame before this worker replies; it writes into a memfd again only after the reply to the batch
that was in it, and a batch that user code keeps past its call is moved to private pages first
(SharedBatches.settle).

A frame is 1 byte of kind, the payload's length as 8 bytes little-endian, then the payload. A result
batch holds only the columns that changed or were added, and `__smelt_drop__` when rows are dropped:
strings (each row's reason, null = keep), or booleans (True drops) with the one reason in the field's
metadata `smelt.reason` (batch mode's boolean answers); its schema metadata `smelt.user_ns` is the time
the batch spent in user code (the calls; in filter and map mode, the loop over the rows that makes them).
A B or M frame's stream holds the rows of one call (`batch_rows`) as one batch, or as several (columns
of types smelt does not join) that the worker reads as one.
The frames use duplicates of file descriptors 0 and 1, which then point at /dev/null and stderr: a
print (from Python or from C) in user code goes to stderr, never into a frame.

Users import the decorators from here (`from smelt_data import filter`): they only name the mode, so
a stage that does not set `mode:` knows it.
"""

import gc
import importlib
import importlib.util
import inspect
import json
import os
import struct
import sys
import time
import traceback

HEADER = struct.Struct("<cQ")
DROP = "__smelt_drop__"
#: Result batches' schema metadata: nanoseconds the batch spent in user code (smelt sums it per stage).
USER_NS = "smelt.user_ns"
_THIS_FILE = globals().get("__file__", "<string>")


# ---- decorators ----------------------------------------------------------------------------------


def _mode_decorator(mode):
    def mark(fn):
        fn.__smelt_mode__ = mode
        return fn

    mark.__name__ = mode
    mark.__doc__ = f"Marks a function (or class) as a smelt `python` stage step in `{mode}` mode."
    return mark


#: `@filter`: `fn(row: dict) -> bool | (False, reason)`.
filter = _mode_decorator("filter")  # noqa: A001 (named as the mode; the worker never uses the builtin)
#: `@map`: `fn(row: dict) -> dict` of the columns to set.
map = _mode_decorator("map")  # noqa: A001
#: `@batch`: `fn(batch: pyarrow.RecordBatch) -> RecordBatch | Table | dict of columns | boolean or string array`.
batch = _mode_decorator("batch")


# ---- frames --------------------------------------------------------------------------------------


def read_frame(f):
    """The next (kind, payload) from binary file `f`, or None at end of input."""
    header = f.read(HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise EOFError("input ended inside a frame header")
    kind, n = HEADER.unpack(header)
    payload = f.read(n)
    if len(payload) < n:
        raise EOFError("input ended inside a frame")
    return kind, payload


def write_frame(f, kind, payload):
    f.write(HEADER.pack(kind, len(payload)))
    f.write(payload)
    f.flush()


def to_ipc(batch):
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue().to_pybytes()


def from_ipc(payload):
    """The rows of one call: a RecordBatch (smelt writes a call's batches, `batch_rows`, as one), or a Table when
    the stream holds several (columns of types smelt does not join: lists, structs); batch mode makes that one
    RecordBatch (`whole`), the other modes read its columns as they are."""
    import pyarrow as pa

    reader = pa.ipc.open_stream(pa.py_buffer(payload))
    batches = list(reader)
    if not batches:
        raise ValueError("a batch frame holds no batch")
    return batches[0] if len(batches) == 1 else pa.Table.from_batches(batches)


def whole(rows):
    """`rows` as one RecordBatch."""
    import pyarrow as pa

    if isinstance(rows, pa.Table):
        return rows.combine_chunks().to_batches()[0]
    return rows


class SharedBatches:
    """The memfd smelt writes batches into, mapped read-only (mapped again when smelt grows it); each batch is read
    where it lies, without a copy."""

    def __init__(self, fd):
        self.fd, self.map, self.size, self.view = fd, None, 0, None

    def batch(self, n, size):
        import mmap

        if size != self.size:
            if self.map is not None:
                try:
                    self.map.close()
                except BufferError:
                    pass  # a view is still alive somewhere: the mapping goes when it does
            self.map = mmap.mmap(self.fd, size, prot=mmap.PROT_READ) if size else None
            self.size = size
        if n > self.size:
            raise ValueError(f"a shared batch of {n} bytes in a buffer of {self.size}")
        self.view = memoryview(self.map)[:n]
        return from_ipc(self.view)

    def settle(self):
        """After a call, before its reply (smelt writes the next batch once it has the reply): when something still
        holds the batch (user code that kept it, or a part of it), the pages under it become private copies, so
        that the next batch cannot change what it holds, and later batches use a new mapping."""
        view, self.view = self.view, None
        if view is None:
            return
        try:
            view.release()  # refused while a pyarrow buffer of the batch is alive
            return
        except BufferError:
            pass
        import ctypes
        import mmap

        import pyarrow as pa

        length = -(-len(view) // mmap.PAGESIZE) * mmap.PAGESIZE
        whole = pa.py_buffer(self.map)
        addr = whole.address
        del whole
        saved = ctypes.string_at(addr, length)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long)
        map_fixed = 0x10  # MAP_FIXED: replaces the shared pages at this address by anonymous ones
        got = libc.mmap(addr, length, mmap.PROT_READ | mmap.PROT_WRITE,
                        mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | map_fixed, -1, 0)
        if got != addr:
            raise OSError(ctypes.get_errno(), "cannot keep a batch that user code holds: mmap failed")
        ctypes.memmove(addr, saved, length)
        # The old mapping object stays alive while the batch does, and unmaps the range when it goes.
        self.map, self.size = None, 0


def schema_from_hex(text):
    import pyarrow as pa

    return pa.ipc.open_stream(pa.py_buffer(bytes.fromhex(text))).schema


# ---- errors --------------------------------------------------------------------------------------


class OutputError(Exception):
    """What user code returned does not fit the stage (`output_schema`, the mode): never dropped."""


class RowError(Exception):
    """An exception of user code on one row (`index`, `id`)."""

    def __init__(self, error, index, doc_id):
        super().__init__(str(error))
        self.error, self.index, self.doc_id = error, index, doc_id


def user_traceback(e):
    """The traceback of `e` from the first frame outside this file."""
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _THIS_FILE:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(e), e, tb))


def error_payload(e):
    row = None
    if isinstance(e, RowError):
        row = {"index": e.index, "id": e.doc_id}
        e = e.error
    return json.dumps({
        "type": type(e).__name__,
        "message": str(e),
        "traceback": "" if isinstance(e, OutputError) else user_traceback(e),
        "output": isinstance(e, OutputError),
        "row": row,
    }).encode()


# ---- loading user code ---------------------------------------------------------------------------


def install_decorators():
    """`import smelt_data` works in user code even where the package is not installed."""
    if "smelt_data" in sys.modules or importlib.util.find_spec("smelt_data") is not None:
        return
    import types

    shim = types.ModuleType("smelt_data")
    shim.filter, shim.map, shim.batch = filter, map, batch
    shim.__doc__ = "smelt's decorators (the worker's copy; `pip install smelt-data` for the whole package)"
    sys.modules["smelt_data"] = shim


def load_module(config):
    if config.get("path"):
        path = config["path"]
        name = os.path.splitext(os.path.basename(path))[0]
        directory = os.path.dirname(os.path.abspath(path))
        if directory not in sys.path:
            sys.path.insert(0, directory)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(config["module"])


def find_attr(module, name, what):
    obj = getattr(module, name, None)
    if obj is None:
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise LookupError(json.dumps({"what": what, "name": name, "names": names}))
    return obj


def load_step(dotted):
    """The class named `package.module.Class`."""
    module_name, _, class_name = dotted.rpartition(".")
    if not module_name:
        raise LookupError(json.dumps({"what": "step", "name": dotted, "names": []}))
    module = importlib.import_module(module_name)
    return find_attr(module, class_name, "step")


# ---- running a user function ---------------------------------------------------------------------


_ROW_BUILDERS = {}


def _row_builder(names):
    """A function from column lists to row dicts for these column names: a list comprehension with a dict
    display (`{'id': c0, 'text': c1, ...}`), three times faster than `dict(zip(names, values))` per row."""
    builder = _ROW_BUILDERS.get(names)
    if builder is None:
        values = ", ".join(f"c{i}" for i in range(len(names)))
        display = ", ".join(f"{name!r}: c{i}" for i, name in enumerate(names))
        source = f"lambda columns: [{{{display}}} for {values}{',' if len(names) == 1 else ''} in zip(*columns)]"
        builder = _ROW_BUILDERS[names] = eval(source)  # noqa: S307 (the names are repr()'d: no code of the user's)
    return builder


def python_rows(batch):
    """The batch's rows as dicts, and its columns as Python lists (the values the dicts started with)."""
    names = tuple(batch.schema.names)
    # A column of nulls only (a source's unset `url`, `fetched_at`) as a list at once: pyarrow's to_pylist makes a
    # scalar object per null, 30 times slower than the list.
    columns = [[None] * len(c) if c.null_count == len(c) else c.to_pylist() for c in batch.columns]
    rows = _row_builder(names)(columns) if names else [{} for _ in range(batch.num_rows)]
    return rows, dict(zip(names, columns))


def row_id(row):
    value = row.get("id") if isinstance(row, dict) else None
    return str(value) if value is not None else None


class Output:
    """Builds result batches: the changed or new columns, cast to their types, and the drop column."""

    def __init__(self, declared):
        self.declared = declared  # pyarrow.Schema of the output_schema columns

    def target(self, batch, name):
        i = self.declared.get_field_index(name)
        if i >= 0:
            return self.declared.field(i).type
        i = batch.schema.get_field_index(name)
        if i >= 0:
            return batch.schema.field(i).type
        allowed = ", ".join(batch.schema.names + [n for n in self.declared.names if n not in batch.schema.names])
        raise OutputError(
            f"returned column `{name}`, which is neither an input column nor in output_schema "
            f"(declare it there, e.g. `output_schema: {{{name}: float64}}`); the columns are: {allowed}")

    def cast(self, batch, name, values):
        import pyarrow as pa

        target = self.target(batch, name)
        try:
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks()
            if isinstance(values, pa.Array):
                return values if values.type == target else values.cast(target)
            return pa.array(values, type=target)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            raise OutputError(f"column `{name}` does not fit its type {target} (output_schema): {e}") from None

    def result(self, batch, columns, drops, reason=None):
        """`columns`: name -> values (Arrow arrays or lists); `drops`: None, one reason (or None) per row as a list
        or a string array, or a boolean array (True drops) whose rows all have `reason`."""
        import pyarrow as pa

        fields, arrays = [], []
        for name, values in columns.items():
            array = self.cast(batch, name, values)
            if len(array) != batch.num_rows:
                raise OutputError(f"column `{name}` has {len(array)} rows for a batch of {batch.num_rows}")
            i = batch.schema.get_field_index(name)
            if i >= 0 and batch.column(i).type == array.type:
                existing = batch.column(i)
                if isinstance(existing, pa.ChunkedArray):
                    existing = existing.combine_chunks()
                if existing.equals(array):
                    continue  # unchanged: not sent back
            fields.append(pa.field(name, array.type))
            arrays.append(array)
        names = [f.name for f in fields]
        for name in self.declared.names:
            if name not in names and batch.schema.get_field_index(name) < 0:
                raise OutputError(f"returned no column `{name}`, which output_schema declares")
        if isinstance(drops, pa.Array) and pa.types.is_boolean(drops.type):
            if drops.true_count:  # one bit a row, the reason once (REASON_KEY in protocol.rs)
                fields.append(pa.field(DROP, pa.bool_(), metadata={"smelt.reason": reason}))
                arrays.append(drops)
        elif isinstance(drops, pa.Array):
            if drops.null_count < len(drops):
                fields.append(pa.field(DROP, pa.string()))
                arrays.append(drops.cast(pa.string()))
        elif drops is not None and any(d is not None for d in drops):
            fields.append(pa.field(DROP, pa.string()))
            arrays.append(pa.array(drops, type=pa.string()))
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def verdict(result, default_reason):
    """A filter's answer: None to keep, or the drop reason."""
    if isinstance(result, tuple) and len(result) == 2:
        keep, reason = result
    elif result is None:
        raise OutputError("a filter returned None: return True to keep the row, False or (False, reason) to drop it")
    else:
        keep, reason = result, None
    if keep:
        return None
    return str(reason) if reason else default_reason


class UserStep:
    """A `python` stage: the user's function in `filter`, `map` or `batch` mode."""

    def __init__(self, config):
        install_decorators()
        module = load_module(config)
        options = config.get("options") or {}
        if config.get("function"):
            fn = find_attr(module, config["function"], "function")
            if not callable(fn):
                raise TypeError(f"`{config['function']}` is a {type(fn).__name__}, not a function")
            mode = getattr(fn, "__smelt_mode__", None)
            if options:
                import functools

                fn = functools.partial(fn, **options)
            self.name = config["function"]
        else:
            cls = find_attr(module, config["class"], "class")
            mode = getattr(cls, "__smelt_mode__", None)
            instance = cls(**options)
            wanted = config.get("mode") or mode
            fn = getattr(instance, wanted, None) if wanted else None
            if fn is None:
                fn = instance
            if not callable(fn):
                raise TypeError(f"`{config['class']}` instances have no `{wanted}` method and are not callable")
            self.name = config["class"]
        self.mode = config.get("mode") or mode
        self.fn = fn
        self.user_ns = 0
        self.drop_errors = config.get("on_error") == "drop"
        self.output = Output(schema_from_hex(config["declared"]))

    def process(self, batch):
        # The rows are many small dicts and no cycles: the cyclic GC would scan them again and again.
        gc.disable()
        try:
            return getattr(self, "process_" + self.mode)(batch)
        finally:
            gc.enable()

    def call_rows(self, batch, each):
        """Calls the function on every row; `each(i, row, result, drops)`. Returns the rows, the input columns as
        lists, and the drop reasons of rows whose call raised (with on_error: drop)."""
        rows, columns = python_rows(batch)
        drops = [None] * len(rows)
        fn = self.fn
        start = time.perf_counter_ns()
        for i, row in enumerate(rows):
            try:
                result = fn(row)
            except Exception as e:  # noqa: BLE001 (user code: any exception is the user's)
                if not self.drop_errors:
                    raise RowError(e, i, row_id(row)) from None
                drops[i] = type(e).__name__
                continue
            each(i, row, result, drops)
        self.user_ns += time.perf_counter_ns() - start
        return rows, columns, drops

    def process_filter(self, batch):
        # The loop of call_rows, inlined: a filter is often a cheap expression, and the call per row matters.
        rows, _ = python_rows(batch)
        drops = [None] * len(rows)
        fn, name, drop_errors = self.fn, self.name, self.drop_errors
        start = time.perf_counter_ns()
        for i, row in enumerate(rows):
            try:
                result = fn(row)
            except Exception as e:  # noqa: BLE001
                if not drop_errors:
                    raise RowError(e, i, row_id(row)) from None
                drops[i] = type(e).__name__
                continue
            if result is True:
                continue
            drops[i] = name if result is False else verdict(result, name)
        self.user_ns += time.perf_counter_ns() - start
        return self.output.result(batch, {}, drops)

    def process_map(self, batch):
        results = [None] * batch.num_rows

        def each(i, row, result, drops):
            if not isinstance(result, dict):
                raise OutputError(f"map mode returns a dict of columns; `{self.name}` returned {type(result).__name__}")
            results[i] = result

        rows, columns, drops = self.call_rows(batch, each)
        keys = {}
        for r in results:
            if r is not None:
                keys.update(dict.fromkeys(r))
        changed = {}
        for key in keys:
            original = columns.get(key)
            if original is None:
                changed[key] = [r.get(key) if r is not None else None for r in results]
                continue
            values = [r.get(key, original[i]) if r is not None else original[i] for i, r in enumerate(results)]
            if any(v is not o for v, o in zip(values, original)):
                changed[key] = values
        return self.output.result(batch, changed, drops)

    def process_batch(self, batch):
        import pyarrow as pa

        batch = whole(batch)
        start = time.perf_counter_ns()
        try:
            result = self.fn(batch)
        except Exception as e:  # noqa: BLE001
            if not self.drop_errors:
                raise
            return self.output.result(batch, {}, [type(e).__name__] * batch.num_rows)
        finally:
            self.user_ns += time.perf_counter_ns() - start
        if isinstance(result, (pa.RecordBatch, pa.Table)):
            if result.num_rows != batch.num_rows:
                raise OutputError(
                    f"`{self.name}` returned {result.num_rows} rows for a batch of {batch.num_rows}: batch mode keeps "
                    "the rows in place; return a boolean array (True keeps) or a string array (drop reasons, null "
                    "keeps) to drop rows")
            return self.output.result(batch, dict(zip(result.schema.names, result.columns)), None)
        if isinstance(result, dict):
            return self.output.result(batch, result, None)
        if result is None or isinstance(result, (str, bytes)):
            raise OutputError(
                f"`{self.name}` returned {type(result).__name__}: batch mode returns a RecordBatch, Table or dict of "
                "columns, or a boolean or string array (one verdict per row)")
        try:
            mask = result.combine_chunks() if isinstance(result, pa.ChunkedArray) else pa.array(result)
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise OutputError(f"`{self.name}` returned {type(result).__name__}, which is not an array: {e}") from None
        if len(mask) != batch.num_rows:
            raise OutputError(f"`{self.name}` returned {len(mask)} verdicts for a batch of {batch.num_rows} rows")
        if pa.types.is_boolean(mask.type):
            import pyarrow.compute as pc

            # True keeps; null drops, as False does.
            return self.output.result(batch, {}, pc.invert(pc.fill_null(mask, False)), self.name)
        elif pa.types.is_string(mask.type) or pa.types.is_large_string(mask.type):
            drops = mask
        else:
            raise OutputError(
                f"`{self.name}` returned an array of {mask.type}: verdicts are booleans (True keeps) or strings "
                "(the drop reason, null keeps)")
        return self.output.result(batch, {}, drops)


class DatatroveStep:
    """A `datatrove` stage: an installed datatrove PipelineStep, fed the rows as Documents."""

    def __init__(self, config):
        from datatrove.pipeline.filters.base_filter import BaseFilter

        cls = load_step(config["step"])
        self.step = cls(**(config.get("args") or {}))
        self.name = cls.__name__
        self.is_filter = isinstance(self.step, BaseFilter)
        self.user_ns = 0
        self.drop_errors = config.get("on_error") == "drop"
        self.output = Output(schema_from_hex(config["declared"]))

    def documents(self, batch):
        from datatrove.data import Document

        rows, _ = python_rows(batch)
        docs = []
        for i, row in enumerate(rows):
            text = row.pop("text")
            doc_id = row.pop("id", None)
            docs.append(Document(text=text if text is not None else "", id=str(doc_id if doc_id is not None else i),
                                 metadata=row))
        return docs

    def process(self, batch):
        docs = self.documents(batch)
        texts = [d.text for d in docs]
        start = time.perf_counter_ns()
        if self.is_filter:
            drops = self.filter(docs)
        else:
            drops = self.run(docs)
        self.user_ns += time.perf_counter_ns() - start
        columns = {}
        if any(d.text != t for d, t in zip(docs, texts)):
            columns["text"] = [d.text for d in docs]
        for name in self.output.declared.names:
            if name != "text":
                columns[name] = [d.metadata.get(name) for d in docs]
        return self.output.result(batch, columns, drops)

    def filter(self, docs):
        """As datatrove's BaseFilter.run: `filter_batch` over batches of the step's `batch_size`; the drop
        reason is datatrove's (its stat `dropped_<reason>`), or the step's class name when it gives none."""
        from datatrove.pipeline.filters.base_filter import get_filter_result

        size = max(1, int(getattr(self.step, "batch_size", 1) or 1))
        drops = [None] * len(docs)
        for start in range(0, len(docs), size):
            chunk = docs[start:start + size]
            try:
                results = self.step.filter_batch(chunk)
            except Exception as e:  # noqa: BLE001
                if not self.drop_errors:
                    raise RowError(e, start, chunk[0].id if len(chunk) == 1 else None) from None
                drops[start:start + len(chunk)] = [type(e).__name__] * len(chunk)
                continue
            for j, r in enumerate(results):
                keep, reason = get_filter_result(r)
                if not keep:
                    drops[start + j] = reason or self.name
        return drops

    def run(self, docs):
        """Any other step: `run` over the documents; those it does not yield back are dropped (reason: the
        step's class name); those it yields are matched to the rows by object, else by id."""
        try:
            out = list(self.step.run(iter(docs), 0, 1))
        except Exception as e:  # noqa: BLE001
            if not self.drop_errors:
                raise
            return [type(e).__name__] * len(docs)
        by_object = {id(d): i for i, d in enumerate(docs)}
        by_id = {}
        for i, d in enumerate(docs):
            by_id.setdefault(d.id, []).append(i)
        kept = [False] * len(docs)
        for d in out:
            i = by_object.get(id(d))
            if i is None:
                same = by_id.get(d.id, [])
                if len(same) != 1:
                    raise OutputError(f"{self.name} yielded a document (id `{d.id}`) that is not one of its input "
                                      "rows: smelt maps a step's documents back to rows, so it cannot add documents")
                i = same[0]
                docs[i].text, docs[i].metadata = d.text, d.metadata
            kept[i] = True
        return [None if k else self.name for k in kept]


# ---- entry points --------------------------------------------------------------------------------


def take_stdio():
    """Duplicates of stdin and stdout for frames; fd 0 then reads /dev/null and fd 1 writes to stderr."""
    fin = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
    fout = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return fin, fout


def serve(shared_fds=()):
    fin, fout = take_stdio()
    shared = [SharedBatches(fd) for fd in shared_fds]
    frame = read_frame(fin)
    if frame is None:
        return
    config = json.loads(frame[1])
    try:
        step = DatatroveStep(config) if config.get("kind") == "datatrove" else UserStep(config)
    except Exception as e:  # noqa: BLE001
        write_frame(fout, b"E", error_payload(e))
        return
    write_frame(fout, b"R", b"{}")
    while True:
        frame = read_frame(fin)
        if frame is None:
            return
        kind, payload = frame
        buffer = None
        try:
            if kind == b"M":
                n, size, which = (struct.unpack("<QQQ", payload) if len(payload) == 24
                                  else (*struct.unpack("<QQ", payload), 0))
                if which >= len(shared):
                    raise ValueError(f"a batch in shared buffer {which}, but this worker was started with {len(shared)}")
                buffer = shared[which]
                batch = buffer.batch(n, size)
            else:
                batch = from_ipc(payload)
            step.user_ns = 0
            result = step.process(batch)
            out = (b"B", to_ipc(result.replace_schema_metadata({USER_NS: str(step.user_ns)})))
        except Exception as e:  # noqa: BLE001
            out = (b"E", error_payload(e))
        batch = None
        if buffer is not None:
            buffer.settle()
        write_frame(fout, *out)


def _requirements(cls):
    """The (import name, pip name) pairs a datatrove step declares (`_requires_dependencies`) that are missing."""
    missing = []
    for klass in cls.__mro__:
        for dep in getattr(klass, "_requires_dependencies", []) or []:
            module, package = dep if isinstance(dep, tuple) else (dep, dep)
            if importlib.util.find_spec(module) is None and [module, package] not in missing:
                missing.append([module, package])
    return missing


def _bind(target, arguments, what):
    try:
        inspect.signature(target).bind(**arguments)
    except TypeError as e:
        return {"ok": False, "what": what, "message": str(e)}
    except ValueError:
        pass  # no signature to check (a builtin)
    return None


def probe(request):
    """What `smelt validate` learns before a run: the interpreter, pyarrow, the user's code or the step."""
    import platform

    out = {"ok": True, "python": platform.python_version(), "executable": sys.executable}
    try:
        import pyarrow
    except ImportError as e:
        return dict(out, ok=False, what="pyarrow", message=str(e))
    out["pyarrow"] = pyarrow.__version__

    def failed(what, e, **extra):
        info = {"ok": False, "what": what, "type": type(e).__name__, "message": str(e),
                "traceback": user_traceback(e)}
        if isinstance(e, ModuleNotFoundError):
            info["missing"] = e.name
        if isinstance(e, LookupError):
            try:
                info.update(json.loads(str(e)))
                info["traceback"] = ""
            except ValueError:
                pass
        return dict(out, **info, **extra)

    if request.get("kind") == "datatrove":
        try:
            from importlib.metadata import version

            out["datatrove"] = version("datatrove")
            from datatrove.pipeline.base import PipelineStep
        except Exception as e:  # noqa: BLE001
            return failed("datatrove", e)
        try:
            cls = load_step(request["step"])
        except Exception as e:  # noqa: BLE001
            return failed("step", e)
        if not (inspect.isclass(cls) and issubclass(cls, PipelineStep)):
            return dict(out, ok=False, what="step", message=f"`{request['step']}` is not a datatrove PipelineStep")
        out["source"] = inspect.getsourcefile(cls)
        missing = _requirements(cls)
        if missing:
            return dict(out, ok=False, what="requirements", missing=missing,
                        message=f"{cls.__name__} needs " + ", ".join(m[0] for m in missing))
        bad = _bind(cls, request.get("args") or {}, "args")
        return dict(out, **bad) if bad else out

    install_decorators()
    try:
        module = load_module(request)
    except Exception as e:  # noqa: BLE001
        return failed("module", e)
    out["source"] = getattr(module, "__file__", None)
    name = request.get("function") or request.get("class")
    what = "function" if request.get("function") else "class"
    try:
        obj = find_attr(module, name, what)
    except LookupError as e:
        return failed(what, e)
    if what == "class" and not inspect.isclass(obj):
        return dict(out, ok=False, what=what, message=f"`{name}` is a {type(obj).__name__}, not a class")
    if what == "function" and (inspect.isclass(obj) or not callable(obj)):
        return dict(out, ok=False, what=what,
                    message=f"`{name}` is a {type(obj).__name__}, not a function" +
                            (" (use `class:` for a class)" if inspect.isclass(obj) else ""))
    out["mode"] = getattr(obj, "__smelt_mode__", None)
    options = request.get("options") or {}
    bad = _bind(obj, options, "options") if what == "class" else (_bind_options(obj, options) if options else None)
    return dict(out, **bad) if bad else out


def _bind_options(fn, options):
    """A function with `options` is called as fn(row_or_batch, **options)."""
    try:
        inspect.signature(fn).bind(None, **options)
    except TypeError as e:
        return {"ok": False, "what": "options", "message": str(e)}
    except ValueError:
        pass
    return None


def main(argv):
    if len(argv) >= 2 and argv[1] == "serve":
        serve([int(fd) for fd in argv[2:]])
    elif len(argv) >= 3 and argv[1] == "probe":
        fin, fout = take_stdio()
        fin.close()
        result = probe(json.loads(argv[2]))
        fout.write(json.dumps(result).encode() + b"\n")
        fout.flush()
    else:
        sys.stderr.write("usage: python -m smelt_data.worker serve [SHARED_FD...] | probe REQUEST_JSON (smelt starts it)\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
