# roadsense worker / simulator / CLI image (used by docker-compose.yml)
FROM python:3.11.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY agents agents
COPY pipeline pipeline
COPY roadnet roadnet
COPY schemas schemas
COPY simulator simulator
COPY sql sql
# editable: pipeline/db.py finds the migrations in /app/sql beside the packages
RUN pip install --no-cache-dir -e .
# stage 1's numba kernels compiled into the image (numba's cache, agents/__pycache__): a
# worker then loads them in ~0.3 s instead of compiling them (13.8 s on the development VM)
# at each container start; the sources' stamp written beside them keeps them (agents/_numba_cache.py)
RUN python -c "from agents.passes import compile_kernels; from roadnet import load_network; compile_kernels(load_network())"
ENV ROADSENSE_STORE=rocksdb:// ROADSENSE_DATA_DIR=/var/lib/roadsense
ENTRYPOINT ["roadsense"]
CMD ["worker"]
