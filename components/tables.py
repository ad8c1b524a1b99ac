"""Tables: sortable, keyboard-navigable AG Grids (dash-ag-grid; Dash deprecates dash_table)."""
from __future__ import annotations

import dash_ag_grid as dag
from dash import html


def table(table_id: str, columns: list[tuple[str, str]], label: str, selectable: bool = True):
    """A sortable AG Grid (dash-ag-grid): keyboard navigable; with `selectable`, selecting a row
    (click, or Space on the focused row) sets its `selectedRows`."""
    options = {"domLayout": "autoHeight", "ensureDomOrder": True, "pagination": True, "paginationPageSize": 10,
               "paginationPageSizeSelector": False}
    if selectable:
        options["rowSelection"] = {"mode": "singleRow", "checkboxes": False, "enableClickSelection": True}
    grid = dag.AgGrid(id=table_id, rowData=[], columnSize="responsiveSizeToFit", dashGridOptions=options,
                      columnDefs=[{"field": field, "headerName": name, "sortable": True} for field, name in columns],
                      defaultColDef={"resizable": True, "cellStyle": {"fontFamily": "monospace", "fontSize": 13}},
                      style={"width": "100%"})
    return html.Div(grid, role="region", **{"aria-label": label})
