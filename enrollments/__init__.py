"""DPS enrollments, enrollment groups, registration records and bulk jobs."""
