"""The operator's web dashboard and the /metrics page: one supervised helper process
(web/helper.py) serving both listeners on the bounded server (httpd/bounded.py)."""
