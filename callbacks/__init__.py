"""Thin Dash callbacks: read inputs, call core/, hand results to components/."""

# How often the browser polls a background job (dash's default is 1 s): a job answered from the
# cache reaches the page at the first poll, and progress bars move at this rate. A poll of a
# running job costs the server a few ms.
POLL_MS = 250
