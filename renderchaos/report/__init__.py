"""The run's report: results.json, report.html, the run history and (optionally) OpenTelemetry.

Public: :class:`~renderchaos.report.results.Collector`, :func:`~renderchaos.report.results.write_report`,
:func:`~renderchaos.report.page.render_html`, :func:`renderchaos.report.otel.export_run`.
"""
