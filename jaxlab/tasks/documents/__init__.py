"""Document tasks: field extraction from synthetic business documents and table structure.

    doc_extract           invoice / receipt / purchase order / form text -> one-line JSON record
    table_lookup, table_reverse_lookup, table_row, table_column, table_size, table_partition,
    table_merged
                          "Table Meets LLM" structure questions over markdown / HTML / CSV / JSON

Every task is registered in :mod:`jaxlab.tasks` (``jaxlab.tasks.get("doc_extract")``).
``doc_extract`` also scores partial credit (``task.reward``: field F1; ``task.scores``:
precision, recall, F1, exact). For an encoder, :func:`render_document` gives a document with
the character span of every shown field and :func:`bio_tags` turns spans and any tokenizer's
offsets into BIO tags;
:func:`bio_record` turns predicted tags back into a record, scored by the same
:func:`field_scores` as a decoder's JSON.
"""

from jaxlab.tasks.documents.extraction import DocumentExtraction
from jaxlab.tasks.documents.generator import (Document, bio_label_names, bio_record, bio_spans, bio_tags,
                                              render_document, render_documents)
from jaxlab.tasks.documents.records import field_scores, parse_json, parse_record
from jaxlab.tasks.documents.tables import (TABLE_TASKS, Table, TableColumn, TableLookup, TableMerged,
                                           TablePartition, TableReverseLookup, TableRow, TableSize, draw_table,
                                           serialize)
from jaxlab.tasks.documents.values import normalize

DOCUMENT_TASKS = (DocumentExtraction(),) + tuple(cls() for cls in TABLE_TASKS)

__all__ = ["DOCUMENT_TASKS", "Document", "DocumentExtraction", "TABLE_TASKS", "Table", "TableColumn",
           "TableLookup", "TableMerged", "TablePartition", "TableReverseLookup", "TableRow", "TableSize",
           "bio_label_names", "bio_record", "bio_spans", "bio_tags", "draw_table", "field_scores", "normalize",
           "parse_json", "parse_record", "render_document", "render_documents", "serialize"]
