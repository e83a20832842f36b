"""Pydantic results of list_path / check_path: the public contract of those tools."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class PathEntry(BaseModel):
    name: str = Field(description="the entry's name inside the listed folder (no trailing slash)")
    uri: str = Field(description="the entry's full URI, usable with list_path/check_path and as a job input")
    kind: Literal["file", "dir"]
    size: int | None = Field(None, description="bytes; null for folders")
    modified: str | None = Field(None, description="last modification, ISO 8601 UTC; null when unknown")


class PathListing(BaseModel):
    uri: str = Field(description="the listed location, normalized")
    entries: list[PathEntry] = Field(default_factory=list)
    truncated: bool = Field(description="more entries follow: call again with next_cursor")
    next_cursor: str | None = None
    next: str = Field(description="the next useful call")


class PathCheck(BaseModel):
    uri: str = Field(description="the checked location, normalized")
    exists: bool
    kind: Literal["file", "dir"] | None = None
    size: int | None = Field(None, description="bytes; null for folders")
    modified: str | None = Field(None, description="last modification, ISO 8601 UTC; null when unknown")
    next: str = Field(description="the next useful call")
