FROM apache/airflow:3.3.2-python3.11

# CHT Bridge's pinned runtime dependencies (requirements.txt pins apache-airflow==3.3.2 as well,
# so pip cannot swap the image's Airflow for another version).
COPY requirements.txt /requirements.txt
USER airflow
RUN pip install --no-cache-dir -r /requirements.txt
